//! Sizes a config implies, checked before anything is allocated: byte counts that overflow
//! or that no machine (and no u64 sum in the memory planner) can hold are refused.

use super::Config;

/// Any single byte count the config implies (a weight matrix in f32, the KV cache or one
/// prefill's scratch at `max_position_embeddings`) must stay at or below this: 2^56 bytes
/// (64 PiB) is past any machine, and the planner can add a hundred such terms in u64 without
/// overflowing.
pub const MAX_IMPLIED_BYTES: u128 = 1 << 56;

/// A byte count the config implies: what it is, the key to blame, and its factors as
/// (key, value), multiplied by 4 bytes.
type ImpliedBytes<'a> = (&'a str, &'a str, &'a [(&'a str, u128)]);

impl Config {
    /// Refuses sizes whose byte counts (f32, the widest the model stores) overflow or pass
    /// [`MAX_IMPLIED_BYTES`]: each weight matrix, and what the planner
    /// (`memory/planner.rs`) multiplies out at `max_position_embeddings`: the KV cache,
    /// attention scores (a chunk can be the whole context) and the activations; the sliding
    /// rings the planner caps at `max_position_embeddings`, so the KV bound covers them.
    pub(super) fn check_implied_bytes(&self) -> Result<(), (String, String)> {
        let f32_bytes = 4u128;
        let n = self.max_position_embeddings as u128;
        let (vocab, hidden, inter) = (
            self.vocab_size as u128,
            self.hidden_size as u128,
            self.intermediate_size as u128,
        );
        let (heads, kv, d) = (
            self.num_attention_heads as u128,
            self.num_key_value_heads as u128,
            self.head_dim as u128,
        );
        let (experts, k) = (
            self.num_local_experts as u128,
            self.num_experts_per_tok as u128,
        );
        let layers = self.num_hidden_layers as u128;
        // Per token: the activation widths the planner's scratch formula adds up (u128 sums
        // of usize products cannot overflow).
        let activation_width =
            4 * hidden + 2 * heads * d + 2 * kv * d + experts + k * (3 * inter + hidden);
        // (what, culprit key, factors as "key (value)" for the message, values)
        let implied: [ImpliedBytes; 6] = [
            (
                "the embedding table",
                "vocab_size",
                &[("vocab_size", vocab), ("hidden_size", hidden)],
            ),
            (
                "the attention projections",
                "num_attention_heads",
                &[
                    (
                        "(num_attention_heads + 2 num_key_value_heads)",
                        heads + 2 * kv,
                    ),
                    ("head_dim", d),
                    ("hidden_size", hidden),
                ],
            ),
            (
                "one layer's experts",
                "num_local_experts",
                &[
                    ("num_local_experts", experts),
                    ("2 intermediate_size", 2 * inter),
                    ("hidden_size", hidden),
                ],
            ),
            (
                "the KV cache at max_position_embeddings",
                "max_position_embeddings",
                &[
                    ("num_hidden_layers", layers),
                    ("2 num_key_value_heads", 2 * kv),
                    ("head_dim", d),
                    ("max_position_embeddings", n),
                ],
            ),
            (
                "a prefill's attention scores at max_position_embeddings",
                "max_position_embeddings",
                &[
                    ("2 num_attention_heads", 2 * heads),
                    ("max_position_embeddings", n),
                    ("max_position_embeddings", n),
                ],
            ),
            (
                "a prefill's activations at max_position_embeddings",
                "max_position_embeddings",
                &[
                    ("max_position_embeddings", n),
                    ("the activation width", activation_width),
                ],
            ),
        ];
        for (what, culprit, factors) in implied {
            let bytes = factors
                .iter()
                .try_fold(f32_bytes, |acc, (_, v)| acc.checked_mul(*v));
            if bytes.is_none_or(|b| b > MAX_IMPLIED_BYTES) {
                let product = factors
                    .iter()
                    .map(|(key, v)| format!("{key} {v}"))
                    .collect::<Vec<_>>()
                    .join(" x ");
                return Err((
                    culprit.to_string(),
                    format!(
                        "is too large: {what} would take {product} x 4 bytes, past 2^56 bytes (64 PiB), which no machine holds and the memory planner cannot count"
                    ),
                ));
            }
        }
        Ok(())
    }
}
