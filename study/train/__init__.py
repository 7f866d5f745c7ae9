"""The training engine: frame pairs -> SiamMAE -> loss, with schedule, checkpoints and resume.

engine.py   `train`, the one function a trial (or `study train`) calls
data.py     the training videos and the pair loader for a config
state.py    checkpoints (atomic save, exact resume) and MAE's learning-rate schedule
recon.py    the reconstruction picture (f1 | masked f2 | prediction | f2)
progress.py progress for people: a rich bar on a terminal, plain lines otherwise
cli.py      `study train` (and `python -m study.train` under torchrun)
"""
