"""One file per stage of RB-FT (DESIGN.md); `rbft.pipeline` runs them in order.

Each file's stage function takes the run folder (`rbft.runs.Run`) and the stage's inputs; it
names its key and outputs, and the run folder skips, borrows or resumes it. The work itself
is, where it is more than a few lines, a plain function beside it, from inputs to outputs.
"""
