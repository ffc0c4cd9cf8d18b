"""Solutions to the exercises of chapter 04 (PPO). Checked by tests/test_exercises.py."""
import torch


def per_token_rewards(scores, logprobs, ref_logprobs, mask, beta):
    """Exercise 4.1: -beta * k1 at every real token; the score added at the last real token."""
    rewards = torch.where(mask, -beta * (logprobs - ref_logprobs), torch.zeros_like(logprobs))
    last = mask.sum(1) - 1
    rewards[torch.arange(len(scores)), last] += scores
    return rewards


def gae(rewards, values, mask, gamma, lam):
    """Exercise 4.2: walk backwards; V after the last real token is 0; padding stays 0."""
    rewards = torch.where(mask, rewards, torch.zeros_like(rewards))
    values = torch.where(mask, values, torch.zeros_like(values))
    advantages = torch.zeros_like(rewards)
    next_adv = torch.zeros(rewards.shape[0])
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros(rewards.shape[0])
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_adv = delta + gamma * lam * next_adv
        advantages[:, t] = next_adv
    advantages = torch.where(mask, advantages, torch.zeros_like(advantages))
    returns = torch.where(mask, advantages + values, torch.zeros_like(values))
    return advantages, returns


def kl_estimates(logprobs, ref_logprobs):
    """Exercise 4.3: with log r = log pi_ref - log pi: k1 = -log r, k3 = (r - 1) - log r."""
    log_r = ref_logprobs - logprobs
    return -log_r, torch.exp(log_r) - 1 - log_r


def clipped_surrogate(new_logprobs, old_logprobs, advantages, mask, eps):
    """Exercise 4.4: the larger (more pessimistic) of the two losses, averaged over real tokens."""
    ratio = torch.exp(new_logprobs - old_logprobs)
    loss = torch.max(-advantages * ratio, -advantages * torch.clamp(ratio, 1 - eps, 1 + eps))
    return (loss * mask).sum() / mask.sum()
