"""Reports over a results folder (HTML, PNG, markdown) will live here; they read results, so may
not import the engine, targets, sim, session, launch, cli or any wire library."""
