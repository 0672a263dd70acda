"""dptrain's language model written in PyTorch, the peer of the CPU and GPU benchmarks
(bench_cpu_torch.py, bench_gpu_torch.py): pre-LayerNorm GPT blocks, learned positions, a token
embedding tied to the output head, GELU (tanh), a 4x MLP, biases, GPT-2's initialization, the
mean cross-entropy over every position. Attention through scaled_dot_product_attention where the
installed PyTorch has it, else two matrix products around a masked softmax. Import it only after
torch imported cleanly."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

SDPA = hasattr(F, "scaled_dot_product_attention")


class Block(nn.Module):
    def __init__(self, C, n_head, T):
        super().__init__()
        self.n_head = n_head
        self.ln1 = nn.LayerNorm(C)
        self.qkv = nn.Linear(C, 3 * C)
        self.proj = nn.Linear(C, C)
        self.ln2 = nn.LayerNorm(C)
        self.fc = nn.Linear(C, 4 * C)
        self.fc_proj = nn.Linear(4 * C, C)
        if not SDPA:
            self.register_buffer("causal", torch.tril(torch.ones(T, T, dtype=torch.bool)))

    def forward(self, x):
        B, T, C = x.shape
        hs = C // self.n_head
        heads = lambda t: t.view(B, T, self.n_head, hs).transpose(1, 2)
        q, k, v = map(heads, self.qkv(self.ln1(x)).split(C, dim=2))
        if SDPA:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
            att = att.masked_fill(~self.causal[:T, :T], float("-inf")).softmax(dim=-1)
            y = att @ v
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.fc_proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, V, T, C, L, n_head):
        super().__init__()
        self.wte = nn.Embedding(V, C)
        self.wpe = nn.Embedding(T, C)
        self.blocks = nn.ModuleList(Block(C, n_head, T) for _ in range(L))
        self.ln_f = nn.LayerNorm(C)
        # GPT-2 initialization: N(0, 0.02), residual projections scaled by 1/sqrt(2L).
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * L) if name.endswith("proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx, targets):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for b in self.blocks:
            x = b(x)
        logits = F.linear(self.ln_f(x), self.wte.weight)  # tied output head
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))


def adamw(model, lr, **kw):
    """AdamW with weight decay 0.1 on the matrices and embeddings only, as dptrain decays."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.95), eps=1e-8, **kw)
