"""The trust layer: is a reconstruction supported by the data, and how sure is the model?

* :mod:`~fluorecon.trust.consistency` — re-apply the forward model f and compare with the recording
  (excess over noise; residual whiteness).
* :mod:`~fluorecon.trust.uncertainty` — ensembles, probabilistic heads, calibration, conformal intervals.
* :mod:`~fluorecon.trust.shift` — training-data statistics and distribution-shift scores.
* :mod:`~fluorecon.trust.fragility` — output change per unit input change (random, worst case, FGSM).
* :mod:`~fluorecon.trust.explain` — gradient saliency and perturbation-covariance maps for a region.
* :mod:`~fluorecon.trust.verify` — ``verify(recording, reconstruction, forward)``: calibrated added / missing
  regions, forward-model mismatch; any result from any software.
* :mod:`~fluorecon.trust.summary` — ``assess(...) -> TrustSummary``, used by ``predict --check``.
"""

from fluorecon.trust.consistency import ConsistencyResult, consistency, residual_whiteness
from fluorecon.trust.summary import TrustSummary, assess

# ``verify`` itself is fluorecon.trust.verify.verify (importing it here would hide the module)
from fluorecon.trust.verify import VerifyResult, verify_result

__all__ = ["ConsistencyResult", "TrustSummary", "VerifyResult", "assess", "consistency", "residual_whiteness",
           "verify_result"]
