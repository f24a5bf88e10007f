"""The models and solvers behind the planning policies: the device's speed process as a policy
may model it (:mod:`.device_model`), the per-request dynamic programme (:mod:`.dp`), the queue-aware
value iteration (:mod:`.queue_dp`) and what they plan for (:mod:`.goals`)."""
