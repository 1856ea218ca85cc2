"""The simulated home: deterministic physics of PV, load, battery, EV, HVAC and water heater."""
