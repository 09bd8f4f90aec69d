"""Calibration estimators: pure functions, numpy arrays in, numbers out.

One concept per module (import from the full module path):

* `sequences`  -- reference sequences: Zadoff-Chu, root-raised-cosine shaping, repeated preambles,
  orthogonal pilots.
* `timing`     -- burst detection (exact false-alarm threshold) and sub-sample delay (ML).
* `cfo`        -- carrier frequency offset: repeated-preamble (Moose) and known-pilot ML.
* `phase`      -- phase of the correlation with the reference, and its exact error variance.
* `channel`    -- pilot-based least-squares MIMO channel estimate and its error variance.
* `gain`       -- transmit-gain sweep fit in dB with a linearity check and 1 dB compression point.
* `crb`        -- Cramer-Rao bounds for delay, CFO and phase.
"""
