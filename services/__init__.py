"""The four patientflow services; each stands alone and reaches the others only over HTTP."""
