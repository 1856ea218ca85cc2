"""PV array physics with pvlib, vectorised over whole time ranges.

Chain: solar position (ephemeris) -> clear sky (Ineichen, Linke turbidity passed explicitly, so no data
file is read) -> plane-of-array irradiance (Hay-Davies transposition, physical IAM on the beam) ->
cell temperature (Faiman, roof-mount coefficients) -> PVWatts DC with the temperature coefficient and
system losses -> PVWatts inverter (part-load efficiency) clipped at the inverter's AC rating.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pvlib

from hems.home import PVParams, SiteParams
from hems.sim._localtime import utc_index

_PANDAS_DEPRECATION: type[Warning] = getattr(pd.errors, "Pandas4Warning", DeprecationWarning)

ALBEDO = 0.2
INVERTER_EFFICIENCY = 0.96  # PVWatts nominal inverter efficiency
# Faiman heat-loss coefficients (pvlib defaults: a well-ventilated, stand-off roof mount).
CELL_U0 = 25.0
CELL_U1 = 6.84


@dataclass(frozen=True, slots=True)
class SolarGeometry:
    zenith: np.ndarray
    apparent_zenith: np.ndarray
    azimuth: np.ndarray
    dni_extra: np.ndarray
    airmass_relative: np.ndarray
    airmass_absolute: np.ndarray
    day_of_year: np.ndarray


def solar_geometry(site: SiteParams, t: np.ndarray) -> SolarGeometry:
    """Sun position and air mass at POSIX times ``t``."""
    idx = utc_index(t)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", _PANDAS_DEPRECATION)  # pvlib uses DatetimeIndex.dayofyear
        sp = pvlib.solarposition.get_solarposition(
            idx, site.latitude, site.longitude, altitude=site.altitude_m, method="ephemeris"
        )
    zenith = sp["zenith"].to_numpy(dtype=float)
    apparent = sp["apparent_zenith"].to_numpy(dtype=float)
    azimuth = sp["azimuth"].to_numpy(dtype=float)
    doy = np.asarray(idx.day_of_year, dtype=float)
    dni_extra = np.asarray(pvlib.irradiance.get_extra_radiation(doy), dtype=float)
    am_rel = np.asarray(pvlib.atmosphere.get_relative_airmass(apparent), dtype=float)
    am_abs = np.asarray(
        pvlib.atmosphere.get_absolute_airmass(am_rel, pvlib.atmosphere.alt2pres(site.altitude_m)), dtype=float
    )
    return SolarGeometry(
        zenith=zenith,
        apparent_zenith=apparent,
        azimuth=azimuth,
        dni_extra=dni_extra,
        airmass_relative=np.nan_to_num(am_rel, nan=0.0),
        airmass_absolute=np.nan_to_num(am_abs, nan=0.0),
        day_of_year=doy,
    )


def clear_sky(
    site: SiteParams, geom: SolarGeometry, linke_turbidity: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ineichen-Perez clear-sky (GHI, DNI, DHI), W/m², zero at night."""
    am = np.where(geom.airmass_absolute > 0, geom.airmass_absolute, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        cs = pvlib.clearsky.ineichen(
            geom.apparent_zenith, am, linke_turbidity, site.altitude_m, geom.dni_extra
        )
    day = geom.zenith < 90.0
    out = []
    for key in ("ghi", "dni", "dhi"):
        v = np.nan_to_num(np.asarray(cs[key], dtype=float), nan=0.0)
        out.append(np.where(day, np.maximum(v, 0.0), 0.0))
    return out[0], out[1], out[2]


def decompose(ghi: np.ndarray, geom: SolarGeometry) -> tuple[np.ndarray, np.ndarray]:
    """Erbs decomposition of GHI into (DNI, DHI), W/m²."""
    out = pvlib.irradiance.erbs(ghi, geom.zenith, geom.day_of_year)
    dni = np.nan_to_num(np.asarray(out["dni"], dtype=float), nan=0.0)
    dhi = np.nan_to_num(np.asarray(out["dhi"], dtype=float), nan=0.0)
    return np.maximum(dni, 0.0), np.maximum(dhi, 0.0)


def pv_ac_power_w(
    pv: PVParams,
    geom: SolarGeometry,
    ghi: np.ndarray,
    dni: np.ndarray,
    dhi: np.ndarray,
    temp_air_c: np.ndarray,
    wind_m_s: np.ndarray,
) -> np.ndarray:
    """AC power the array can deliver (after inverter clipping at ``pv.inverter_ac_w``), W, >= 0."""
    tot = pvlib.irradiance.get_total_irradiance(
        pv.tilt_deg,
        pv.azimuth_deg,
        geom.apparent_zenith,
        geom.azimuth,
        dni,
        ghi,
        dhi,
        dni_extra=geom.dni_extra,
        albedo=ALBEDO,
        model="haydavies",
    )
    poa_direct = np.nan_to_num(np.asarray(tot["poa_direct"], dtype=float), nan=0.0)
    poa_diffuse = np.nan_to_num(np.asarray(tot["poa_diffuse"], dtype=float), nan=0.0)
    aoi = pvlib.irradiance.aoi(pv.tilt_deg, pv.azimuth_deg, geom.apparent_zenith, geom.azimuth)
    iam = np.nan_to_num(np.asarray(pvlib.iam.physical(aoi), dtype=float), nan=0.0)
    poa_global = np.maximum(poa_direct + poa_diffuse, 0.0)
    effective = np.maximum(poa_direct * iam + poa_diffuse, 0.0)
    temp_cell = pvlib.temperature.faiman(poa_global, temp_air_c, wind_m_s, u0=CELL_U0, u1=CELL_U1)
    pdc = pvlib.pvsystem.pvwatts_dc(effective, temp_cell, pv.capacity_w, pv.temp_coeff_pct_per_c / 100.0)
    pdc = np.maximum(np.asarray(pdc, dtype=float), 0.0) * (1.0 - pv.losses_pct / 100.0)
    pac = pvlib.inverter.pvwatts(pdc, pv.inverter_ac_w / INVERTER_EFFICIENCY, eta_inv_nom=INVERTER_EFFICIENCY)
    pac = np.nan_to_num(np.asarray(pac, dtype=float), nan=0.0)
    return np.clip(pac, 0.0, pv.inverter_ac_w)
