"""Launching on SLURM through submitit: the executor from the command line's resources, the job that
each task runs (with preemption checkpoints and requeue), sweeps as job arrays. All cluster
knowledge of the project lives in this package (plus the scripts under cluster/)."""
