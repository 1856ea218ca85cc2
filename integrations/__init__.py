"""Protocol adapters, one package per protocol, found through the ``hems.integrations`` entry points."""
