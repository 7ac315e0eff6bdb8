"""The main job: every stage in order on the synthetic benchmark, and its report."""
