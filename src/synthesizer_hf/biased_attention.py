"""softmax(q k^T + bias + mask) v on CPU for the mixtures whose logits carry a bias (random+dot, ...).

Why it exists: SDPA sends a float mask that requires grad to its math path, which materialises the logits,
the mask sum, its safe-softmax checks and the weights as `[batch, heads, q, k]` tensors and keeps them for
backward (the mixtures then trained at ~0.6x BERT). Here the forward is the fused CPU flash kernel, with the
bias as its mask, and the backward recomputes the weights from the saved log-sum-exp one `[rows, k]` tile of
one head at a time, so that each tile stays in cache:

    P = exp(S - lse),  dV += P^T dO,  dS = P * (dO V^T - rowsum(dO * O)),  dQ = dS K,  dK += dS^T Q,
    dbias += dS.

No `[batch, heads, q, k]` tensor exists beyond the bias and its gradient.
"""

import torch

# elements per backward tile of [rows, k]: 512 KiB of float32 (256 x 512, 64 x 2048), in L2; tiles of 64 to 512
# rows were within noise of each other at k = 512 and 2048 (1 CPU thread)
TILE_ELEMENTS = 1 << 17


def _row(tensor: torch.Tensor, index: int) -> torch.Tensor:
    """Entry `index` of a leading dimension that may be broadcast (size 1)."""
    return tensor[index if tensor.shape[0] > 1 else 0]


class BiasedAttention(torch.autograd.Function):
    """The autograd function; call it through `biased_attention`."""

    @staticmethod
    def forward(ctx, query, key, value, bias, mask):
        # rows whose mask blocks nothing take the bias alone: no bias + mask is materialised for them
        ctx.masked_rows = [mask is not None and bool(_row(mask, row).any()) for row in range(query.shape[0])]
        outputs, log_sum_exps = [], []
        for row, masked in enumerate(ctx.masked_rows):
            row_bias = _row(bias, row) + _row(mask, row) if masked else _row(bias, row)
            output, log_sum_exp = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
                query[row : row + 1],
                key[row : row + 1],
                value[row : row + 1],
                attn_mask=row_bias[None],
                scale=1.0,
            )
            outputs.append(output)
            log_sum_exps.append(log_sum_exp)
        output = torch.cat(outputs)
        ctx.save_for_backward(query, key, value, bias, mask, output, torch.cat(log_sum_exps))
        return output

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        query, key, value, bias, mask, output, log_sum_exp = ctx.saved_tensors
        batch, heads, query_length, _ = query.shape
        rows = max(1, TILE_ELEMENTS // key.shape[-2])
        row_dot = (grad_output * output).sum(-1, keepdim=True)
        grad_query = torch.empty_like(query)
        grad_key, grad_value = torch.zeros_like(key), torch.zeros_like(value)
        grad_bias = torch.zeros_like(bias) if ctx.needs_input_grad[3] else None
        for b in range(batch):
            row_bias = _row(bias, b)
            row_mask = _row(mask, b) if ctx.masked_rows[b] else None
            for h in range(heads):
                head_bias = _row(row_bias, h)
                head_mask = None if row_mask is None else _row(row_mask, h)
                q, k, v, g = query[b, h], key[b, h], value[b, h], grad_output[b, h]
                for start in range(0, query_length, rows):
                    tile = slice(start, start + rows)
                    logits = torch.addmm(head_bias[tile], q[tile], k.t())
                    if head_mask is not None:
                        logits += head_mask[tile] if head_mask.shape[0] > 1 else head_mask
                    weights = logits.sub_(log_sum_exp[b, h, tile, None]).exp_()
                    grad_value[b, h].addmm_(weights.t(), g[tile])
                    grad_logits = weights.mul_(torch.mm(g[tile], v.t()).sub_(row_dot[b, h, tile]))
                    torch.mm(grad_logits, k, out=grad_query[b, h, tile])
                    grad_key[b, h].addmm_(grad_logits.t(), q[tile])
                    if grad_bias is not None:
                        _row(_row(grad_bias, b), h)[tile] += grad_logits
        return grad_query, grad_key, grad_value, grad_bias, None


def biased_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    bias: torch.Tensor,
    attention_mask: torch.Tensor | None,
) -> torch.Tensor:
    """softmax(query key^T + bias + attention_mask) value for `[batch, heads, length, d]` query/key/value,
    a `[batch | 1, heads | 1, q, k]` bias and an additive `[batch | 1, 1, q | 1, k]` mask (no gradient).
    Returns `[batch, q, heads, d]`, as the transformers attention interface does."""
    if attention_mask is not None:
        attention_mask = attention_mask.detach()
    return BiasedAttention.apply(query, key, value, bias, attention_mask).transpose(1, 2)
