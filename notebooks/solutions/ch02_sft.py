"""Solutions to the exercises of chapter 02 (SFT). Checked by tests/test_exercises.py."""
import torch


def masked_nll(logits, labels):
    """Exercise 2.1: logits at position t predict token t + 1 (shift by one), -100 is skipped,
    the mean runs over the labelled tokens only."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    target = labels[:, 1:]
    keep = target != -100
    picked = torch.gather(logp, -1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return -(picked * keep).sum() / keep.sum()


def sft_batch(examples, pad_id):
    """Exercise 2.2: right padding; the attention mask is 0 on pads, the labels -100 there."""
    width = max(len(e["input_ids"]) for e in examples)
    ids, mask, labels = [], [], []
    for e in examples:
        pad = width - len(e["input_ids"])
        ids.append(list(e["input_ids"]) + [pad_id] * pad)
        mask.append([1] * len(e["input_ids"]) + [0] * pad)
        labels.append(list(e["labels"]) + [-100] * pad)
    return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask), "labels": torch.tensor(labels)}


def lora_merge(W, A, B, alpha, r):
    """Exercise 2.3: W [out, in], A [r, in], B [out, r]; the update B A is scaled by alpha / r."""
    return W + (alpha / r) * (B @ A)


def lora_count(model, r, target_modules):
    """Exercise 2.4: a LoRA on a linear layer in -> out adds A (r x in) and B (out x r)."""
    total = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name.split(".")[-1] in target_modules:
            total += r * (module.in_features + module.out_features)
    return total
