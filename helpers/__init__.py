"""helpers: the code behind the course notebooks. Import the module a notebook names; nothing runs on import but
one logging setting and one warning filter (below).

    config      the run config and its profile presets (00)     machine     GPU, profile, versions, HF token (00)
    rundir      the run directory (00)                          data        load, check, split, loss mask (01)
    tiny        the offline tiny base model (02)                model       load model and tokenizer (02)
    lora        LoraConfig, attach, what trains (03)            train       SFTConfig, SFTTrainer, a whole run (04)
    widgets     model picker (02), panel (04), rating (05)      evaluation  generate and score, base vs tuned (05)
    inference   reply, stream, merge, push to the Hub (06)      chat        settings panel, chat box, terminal chat (06)
    live        live loss plot, NaN/inf guard: callbacks (04)   plots       every figure, as a Figure
    budget      memory estimate and training plan (02, 04)      course      run every notebook headless
    bench       tutorial recipe vs the course's, measured       cli         `python -m helpers ...`
    robustness  the tiny fine-tune over seeds, min/median/max
"""

import logging
import warnings

# bitsandbytes logs "Failed to load CPU gemm_4bit_forward from kernels-community ... pip install kernels" when peft
# imports it on a CPU. Nothing needs that package: 4-bit loading works without it, and installing it changes
# nothing the course uses. Silenced before any notebook imports peft, so that no learner acts on it.
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)

# peft 0.21 calls a transformers 5.23 method that transformers now calls deprecated: every get_peft_model and
# PeftModel.from_pretrained warns "`is_gradient_checkpointing` is deprecated ... Use `is_activation_checkpointing`".
# The call is inside peft; nothing in a learner's code can change it, so the course's notebooks do not show it.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
