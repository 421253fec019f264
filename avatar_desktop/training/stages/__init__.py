"""The latent model's training stages, one module each; `train STAGE` looks them up in STAGES.

autoencoder: L1 + multi-scale gradient loss on frames (stages/autoencoder.py).
audio:       the audio encoder predicts each frame's mouth from its audio window (stages/audio.py).
teacher:     EDM denoising loss on chunks of cached latents (stages/teacher.py).
distill:     consistency distillation of the teacher into a few-step student (stages/distill.py).
expression:  a one-step student learns what each slider changes (stages/expression.py).
Each module holds its objective (an nn.Module whose forward returns the batch loss) and its driver
`train_<stage>(loaded recipe, data, out, resume)`, which runs training.loop.train. What the latent stages share is in
stages/shared.py; what every stage shares (the motion stages of training/motion.py too) in training/common.py.
Every stage writes `out/model` (a model folder the engine loads), `out/checkpoint`, `out/loss.csv`, `out/loss.png`.
"""

from avatar_desktop.training.stages.audio import train_audio
from avatar_desktop.training.stages.autoencoder import train_autoencoder
from avatar_desktop.training.stages.distill import train_distill
from avatar_desktop.training.stages.expression import train_expression
from avatar_desktop.training.stages.teacher import train_teacher

STAGES = {"autoencoder": train_autoencoder, "audio": train_audio, "teacher": train_teacher, "distill": train_distill,
          "expression": train_expression}
