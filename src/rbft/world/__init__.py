"""The built-in synthetic smart-home world: scenes and subjects (`scenes`), their motion and drawing
(`motion`, `sprites`, `render`), captions and tasks over them, and `generate`, which writes the clips, a
manifest per task and the ground truth the stages read (`rbft.data.annotations`). The method knows nothing
of it; the shipped base model that learnt it is `rbft.basemodel`."""
