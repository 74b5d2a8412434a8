"""Running against a real cluster: the safety rails (abort conditions, caps), the canary that
watches the target from the side, and the run's own objects (its namespace, their cleanup)."""
