"""Solutions to the exercises of chapter 00 (setup). Checked by tests/test_exercises.py."""
import torch


def chat_prompt(system, user):
    """Exercise 0.1: SmolLM2's chat template (ChatML) for a system and a user turn, ready for the answer."""
    return (f"<|im_start|>system\n{system}<|im_end|>\n"
            f"<|im_start|>user\n{user}<|im_end|>\n"
            "<|im_start|>assistant\n")


def left_pad(seqs, pad_id):
    """Exercise 0.2: pads on the left, so that every prompt ends in the last column and generation
    continues all rows from the same column."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        if s:
            ids[row, width - len(s):] = torch.tensor(s)
            mask[row, width - len(s):] = 1
    return ids, mask
