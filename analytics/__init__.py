"""meterhub analytics core: array-level line loss, VEE and per-meter error estimation.

No database and no CLI here: the storage layer fills NumPy arrays and calls the wrappers;
results are dataclasses whose ``to_dict()`` gives the JSON documents of CONTRACTS.md.

* :mod:`analytics.lineloss` — :func:`~analytics.lineloss.line_loss` (same-period 同期线损 per
  area and day or month), :func:`~analytics.lineloss.meter_energy` (register difference ×
  CT × PT with rollover and meter exchanges).
* :mod:`analytics.vee` — :func:`~analytics.vee.validate` (rule flags and the ``vee report``
  fields), :func:`~analytics.vee.estimate_intervals` (linear / like-day),
  :func:`~analytics.vee.collate_intervals` (long rows → matrix, duplicate slots),
  :func:`~analytics.screening.screen_manual_reads` (估抄 / 漏抄 / 错抄).
* :mod:`analytics.meter_error` — :func:`~analytics.meter_error.fit_meter_errors` (ridge fit
  of the area balance), :func:`~analytics.meter_error.track_meter_errors` (recursive least
  squares with forgetting), :func:`~analytics.meter_error.rank_suspects` (``analyze
  suspects``).

The numba kernels live in ``analytics._kernels`` (private). Heavy imports stay out of this
module so that importing ``analytics`` alone costs nothing: import the submodules.
"""
