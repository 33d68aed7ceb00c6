"""What training costs in electricity and carbon: estimated by formula, and measured.

Energy is power times time: a run of ``seconds`` on hardware drawing between
``watts_low`` and ``watts_high`` uses that many kilowatt-hours, times the data
centre's power usage effectiveness (PUE: the electricity the building draws per
unit the computers draw; 1.0 for a laptop on a desk). Carbon is energy times
the grid's carbon intensity, which differs more than fiftyfold from a
wind-powered to a coal-powered grid.

- :func:`estimate_energy`: a kWh range from seconds and a range of watts
  (the formula is :func:`llmcourse.analysis.compute.energy_kwh`);
- :func:`co2_kg`: kilograms of CO2-equivalent from kWh and grams per kWh;
- :data:`GRID_INTENSITIES`: a few cited carbon intensities, with ranges;
- :data:`REFERENCE_FOOTPRINTS`: published energy and carbon of large training runs;
- :class:`EnergyMeter`, :func:`measure`: run code under codecarbon's
  ``OfflineEmissionsTracker`` (no network, nothing written to disk) and report
  kWh, kg CO2e and *how* the CPU's energy was obtained: read from the
  processor's RAPL energy counters where ``/sys/class/powercap`` is readable
  (measured), else estimated from the CPU's rated power (TDP) times its load.

Introduced in: chapter 10, Ethics.
"""

from __future__ import annotations

import logging
import math
import numbers
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from llmcourse.analysis.compute import energy_kwh

# Germany: a large grid in the middle of the range (codecarbon's bundled 2023 figure is about 381 g/kWh),
# between France's nuclear-heavy grid (about 56) and coal-heavy ones (Poland, about 662). A default
# should not make a footprint look as small as the cleanest grid would.
DEFAULT_COUNTRY = "DEU"


def _check_nonnegative(value, name: str) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


# ----------------------------------------------------------------------------- estimates


class EnergyRange(NamedTuple):
    low_kwh: float
    high_kwh: float


def estimate_energy(seconds: float, watts_low: float, watts_high: float, pue: float = 1.0) -> EnergyRange:
    """Energy in kWh of ``seconds`` of work drawing ``watts_low`` to ``watts_high``, times the ``pue``.

    ``pue`` is 1.0 by default (a machine on a desk, no data-centre overhead);
    Patterson et al. (2021) used 1.1 for the Google and Microsoft data centres of
    their Table 4.

    Introduced in: chapter 10, Ethics.
    """
    seconds = _check_nonnegative(seconds, "seconds")
    low, high = _check_nonnegative(watts_low, "watts_low"), _check_nonnegative(watts_high, "watts_high")
    if low > high:
        raise ValueError(f"watts_low={watts_low!r} must not exceed watts_high={watts_high!r}")
    if not isinstance(pue, numbers.Real) or isinstance(pue, bool) or not math.isfinite(pue) or pue < 1.0:
        raise ValueError(f"pue must be a finite number >= 1 (facility power / IT power), got {pue!r}")
    return EnergyRange(energy_kwh(seconds, low) * pue, energy_kwh(seconds, high) * pue)


def co2_kg(kwh: float, grid_g_per_kwh: float) -> float:
    """Kilograms of CO2-equivalent from ``kwh`` of electricity at ``grid_g_per_kwh`` grams per kWh.

    Introduced in: chapter 10, Ethics.
    """
    return _check_nonnegative(kwh, "kwh") * _check_nonnegative(grid_g_per_kwh, "grid_g_per_kwh") / 1_000.0


class GridIntensity(NamedTuple):
    name: str
    g_per_kwh: float  # the central figure the source gives
    low: float  # the range the source gives (equal to g_per_kwh where it gives one number)
    high: float
    source: str


_IPCC = ("Schlömer et al. (2014), IPCC AR5 WG III, Annex III, Table A.III.2: "
         "life-cycle emissions, median (min-max) of the literature reviewed")
GRID_INTENSITIES = (
    GridIntensity("coal (pulverised)", 820, 740, 910, _IPCC),
    GridIntensity("natural gas (combined cycle)", 490, 410, 650, _IPCC),
    GridIntensity("solar PV (utility)", 48, 18, 180, _IPCC),
    GridIntensity("nuclear", 12, 3.7, 110, _IPCC),
    GridIntensity("wind (onshore)", 11, 7, 56, _IPCC),
    GridIntensity("GPT-3's data centre (2020)", 429, 429, 429,
                  "Patterson et al. (2021), Carbon Emissions and Large Neural Network Training, Table 4"),
    GridIntensity("French grid, Jean Zay (BLOOM, 2022)", 57, 57, 57,
                  "Luccioni et al. (2022), Estimating the Carbon Footprint of BLOOM, a 176B Parameter Language Model"),
)


class ReferenceFootprint(NamedTuple):
    model: str
    energy_mwh: float | None  # None where the source gives no energy
    gpu_hours: float | None  # None where the source gives none
    co2e_tonnes: float
    counted: str  # what the carbon figure includes
    source: str


REFERENCE_FOOTPRINTS = (
    ReferenceFootprint("GPT-3 (175B)", 1_287, None, 552, "training, at 429 g/kWh (net, Table 4)",
                       "Patterson et al. (2021), Carbon Emissions and Large Neural Network Training"),
    ReferenceFootprint("BLOOM (176B)", 433, None, 24.7, "training, dynamic power only, at 57 g/kWh",
                       "Luccioni et al. (2022), Estimating the Carbon Footprint of BLOOM"),
    ReferenceFootprint("BLOOM (176B)", 433, None, 50.5,
                       "training plus idle consumption and the hardware's embodied emissions",
                       "Luccioni et al. (2022), Estimating the Carbon Footprint of BLOOM"),
    ReferenceFootprint("Llama 2 (7B to 70B, all four)", None, 3_311_616, 539,
                       "pretraining, GPU power only (100% offset by Meta, says the paper)",
                       "Touvron et al. (2023), Llama 2: Open Foundation and Fine-Tuned Chat Models, Table 2"),
)


# ----------------------------------------------------------------------------- measuring with codecarbon


class Measurement(NamedTuple):
    seconds: float  # wall time of the measured code
    kwh: float  # energy of CPU + RAM (+ GPU) as codecarbon counted it
    co2_kg: float  # kWh times the country's carbon intensity, as codecarbon has it
    cpu_kwh: float
    ram_kwh: float
    gpu_kwh: float
    country: str  # ISO 3166-1 alpha-3 code, e.g. "DEU"
    cpu_method: str  # "rapl", "cpu_load", "constant", ... (see CPU_METHODS)
    measured: bool  # True when the CPU's energy came from hardware counters, not from its TDP


# codecarbon's names for how it gets the CPU's power, and what each means
CPU_METHODS = {
    "intel_rapl": ("rapl", True, "RAPL energy counters under /sys/class/powercap (measured)"),
    "windows_emi": ("windows_emi", True, "Windows Energy Meter Interface, RAPL underneath (measured)"),
    "intel_power_gadget": ("power_gadget", True, "Intel Power Gadget (measured)"),
    "apple_powermetrics": ("powermetrics", True, "Apple powermetrics (measured)"),
    "cpu_load": ("cpu_load", False, "the CPU's TDP times its measured load (estimated)"),
    "constant": ("constant", False, "a fixed share of the CPU's TDP (estimated)"),
}


def cpu_method(tracker: Any) -> tuple[str, bool]:
    """How a started codecarbon tracker obtains the CPU's power: (short name, measured or not).

    codecarbon keeps this on its CPU object (``_mode``) and in its configuration
    (``_conf["hardware"]``, e.g. ``"CPU(Cpu Load)"``); neither is public API, so
    both are read defensively and ``("unknown", False)`` comes back when neither says.

    Introduced in: chapter 10, Ethics.
    """
    for hardware in getattr(tracker, "_hardware", None) or []:
        kind = type(hardware).__name__
        mode = getattr(hardware, "_mode", None)
        if kind == "CPU" and isinstance(mode, str):
            name, measured, _ = CPU_METHODS.get(mode, (mode, False, ""))
            return name, measured
        if kind == "AppleSiliconChip":
            return "powermetrics", True
    for description in (getattr(tracker, "_conf", None) or {}).get("hardware", []):
        text = str(description).lower().replace(" ", "_")
        for mode, (name, measured, _) in CPU_METHODS.items():
            if text.startswith("cpu(") and mode in text:
                return name, measured
        if text.startswith("cpu(") and ">" in text:  # "CPU(model > 45W)": constant mode
            return "constant", False
    return "unknown", False


def _quiet_codecarbon() -> None:
    # codecarbon sets its logger to INFO on import and logs before it applies log_level
    logging.getLogger("codecarbon").setLevel(logging.ERROR)


class EnergyMeter:
    """``with EnergyMeter() as meter: work()``; then ``meter.result`` is a :class:`Measurement`.

    Runs codecarbon's ``OfflineEmissionsTracker`` for ``country_iso_code`` (its
    bundled carbon intensity; no network), sampling power every
    ``measure_power_secs`` seconds, saving nothing to disk. ``tracking_mode`` is
    codecarbon's: ``"machine"`` counts the whole computer (other programs
    included), ``"process"`` this process's share of the CPU load.

    Introduced in: chapter 10, Ethics.
    """

    def __init__(self, country_iso_code: str = DEFAULT_COUNTRY, measure_power_secs: float = 1.0,
                 tracking_mode: str = "machine"):
        if not isinstance(country_iso_code, str) or len(country_iso_code) != 3 or not country_iso_code.isalpha():
            raise ValueError(
                f"country_iso_code must be an ISO 3166-1 alpha-3 code such as 'DEU', got {country_iso_code!r}")
        if not isinstance(measure_power_secs, numbers.Real) or not measure_power_secs > 0:
            raise ValueError(f"measure_power_secs must be a positive number, got {measure_power_secs!r}")
        if tracking_mode not in ("machine", "process"):
            raise ValueError(f"tracking_mode must be 'machine' or 'process', got {tracking_mode!r}")
        self.country = country_iso_code.upper()
        self.measure_power_secs = float(measure_power_secs)
        self.tracking_mode = tracking_mode
        self.result: Measurement | None = None
        self._tracker = None

    def __enter__(self) -> EnergyMeter:
        from codecarbon import OfflineEmissionsTracker

        _quiet_codecarbon()
        self._tracker = OfflineEmissionsTracker(
            country_iso_code=self.country, measure_power_secs=self.measure_power_secs,
            tracking_mode=self.tracking_mode, log_level="error",
            output_methods=[])  # no CSV file, no API, no logger (save_to_file=False is deprecated in codecarbon 3)
        self._tracker.start()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        seconds = time.perf_counter() - self._start
        tracker, self._tracker = self._tracker, None
        tracker.stop()
        data = getattr(tracker, "final_emissions_data", None)
        if data is None:
            raise RuntimeError("codecarbon returned no measurement")
        method, measured = cpu_method(tracker)
        self.result = Measurement(
            seconds=seconds, kwh=float(data.energy_consumed), co2_kg=float(data.emissions),
            cpu_kwh=float(data.cpu_energy), ram_kwh=float(data.ram_energy), gpu_kwh=float(data.gpu_energy),
            country=self.country, cpu_method=method, measured=measured)


def measure(fn: Callable[..., Any], *args, country_iso_code: str = DEFAULT_COUNTRY,
            measure_power_secs: float = 1.0, **kwargs) -> tuple[Any, Measurement]:
    """Call ``fn(*args, **kwargs)`` under an :class:`EnergyMeter`; return its result and the :class:`Measurement`.

    Introduced in: chapter 10, Ethics.
    """
    with EnergyMeter(country_iso_code, measure_power_secs) as meter:
        value = fn(*args, **kwargs)
    return value, meter.result
