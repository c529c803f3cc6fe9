//! A chat session over one KV cache: re-uses the longest common token prefix between what the
//! cache holds and the next prompt, so a new turn only processes what is new.
//!
//! The harmony renderer drops earlier `analysis` messages, so the next prompt diverges from
//! the cached tokens right after the previous prompt's `<|start|>assistant`. The session marks a
//! sliding-layer snapshot there (after each prefill), which lets the cache rewind exactly to
//! that point instead of re-processing the conversation.

use candle_core::Tensor;

use crate::model::cache::{KvLayout, KvPayloadError};
use crate::model::{GptOss, KvCache, Logits, ModelError};

/// Prompt tokens are fed to the model in chunks of this many, so a stop request or a progress
/// report never waits for a whole long prompt.
pub const PREFILL_CHUNK_TOKENS: usize = 512;

/// The tokens in a KV cache, kept in step with it.
pub struct Session {
    cache: KvCache,
    /// Exactly the tokens whose keys/values the cache holds, in order.
    tokens: Vec<u32>,
}

/// How a prompt was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefillPlan {
    /// Tokens re-used from the cache.
    pub cached_tokens: usize,
    /// Tokens that must run through the model.
    pub new_tokens: usize,
}

impl Session {
    /// A session over an empty cache.
    pub fn new(cache: KvCache) -> Self {
        Self {
            cache,
            tokens: Vec::new(),
        }
    }

    /// Tokens in the cache.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// True when the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The cache's capacity in tokens (the context limit).
    pub fn capacity(&self) -> usize {
        self.cache.capacity()
    }

    /// Bytes the KV cache occupies.
    pub fn cache_bytes(&self) -> u64 {
        self.cache.bytes()
    }

    /// Bytes of the KV cache that hold cached tokens.
    pub fn cache_bytes_in_use(&self) -> u64 {
        self.cache.bytes_in_use()
    }

    /// The tokens the cache holds.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Forgets everything (a new chat).
    pub fn reset(&mut self) {
        self.rewind(0);
    }

    /// Drops cached tokens after `keep_tokens`; returns how many the cache really kept (it may
    /// have to go further back when the sliding layers have no snapshot at that point).
    pub fn rewind(&mut self, keep_tokens: usize) -> usize {
        let kept = self.cache.rewind(keep_tokens.min(self.tokens.len()));
        self.tokens.truncate(kept);
        kept
    }

    /// Rewinds the cache to the longest prefix it shares with `prompt` and says what is left
    /// to run. At least one prompt token is always left, since its logits start the answer.
    pub fn plan_prefill(&mut self, prompt: &[u32]) -> PrefillPlan {
        let shared = common_prefix_len(&self.tokens, prompt).min(prompt.len().saturating_sub(1));
        let kept = self.rewind(shared);
        PrefillPlan {
            cached_tokens: kept,
            new_tokens: prompt.len() - kept,
        }
    }

    /// Runs `tokens` (continuing the cache) and returns the logits of the last one, [vocab].
    pub fn feed(&mut self, model: &GptOss, tokens: &[u32]) -> Result<Tensor, ModelError> {
        let logits = model.forward(tokens, &mut self.cache, Logits::Last)?;
        self.tokens.extend_from_slice(tokens);
        Ok(logits)
    }

    /// [`Session::feed`], asking `stop` before every layer. On a stop it returns `None` and
    /// keeps only the tokens the cache really holds (those of finished inner chunks), so the
    /// next prompt re-runs the rest.
    pub fn feed_unless(
        &mut self,
        model: &GptOss,
        tokens: &[u32],
        stop: &mut dyn FnMut() -> bool,
    ) -> Result<Option<Tensor>, ModelError> {
        let before = self.cache.len();
        let logits = model.forward_unless(tokens, &mut self.cache, Logits::Last, stop)?;
        let ran = self.cache.len() - before;
        self.tokens
            .extend_from_slice(&tokens[..ran.min(tokens.len())]);
        Ok(logits)
    }

    /// Marks a sliding-layer snapshot at the current position (the start of an assistant turn, or
    /// of a message the model starts within its turn).
    pub fn mark_turn_start(&mut self) {
        self.cache.mark_snapshot();
    }

    /// What the cache holds (a snapshot file's header).
    pub fn cache_layout(&self) -> Result<KvLayout, KvPayloadError> {
        self.cache.layout()
    }

    /// Writes the cache's keys and values in [`Session::cache_layout`]'s order.
    pub fn write_cache(&self, out: &mut dyn std::io::Write) -> Result<(), KvPayloadError> {
        self.cache.write_payload(out)
    }

    /// Replaces the session with `tokens` and the cache state `input` holds for `layout`
    /// (read back from [`Session::write_cache`]). On any error the session is left empty.
    pub fn restore(
        &mut self,
        tokens: Vec<u32>,
        layout: &KvLayout,
        input: &mut dyn std::io::Read,
    ) -> Result<(), KvPayloadError> {
        self.tokens.clear();
        if tokens.len() != layout.len {
            self.cache.clear();
            return Err(KvPayloadError::Mismatch(format!(
                "{} token ids for {} cached positions",
                tokens.len(),
                layout.len
            )));
        }
        self.cache.read_payload(layout, input)?;
        self.tokens = tokens;
        Ok(())
    }
}

/// Length of the longest common prefix of two token sequences.
pub fn common_prefix_len(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Precision;
    use candle_core::Device;
    use std::path::Path;

    fn tiny_model() -> GptOss {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-a-bf16");
        GptOss::load(&dir, &Device::Cpu, Precision::F32).expect("tiny fixture loads")
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .and_then(|d| d.abs())
            .and_then(|d| d.flatten_all())
            .and_then(|d| d.max(0))
            .and_then(|d| d.to_scalar::<f32>())
            .expect("same-shaped logits")
    }

    /// A second turn whose prompt diverges right after the first prompt (as when the renderer
    /// drops the first turn's reasoning) re-uses the first prompt from the cache, and its
    /// logits equal a fresh prefill of the whole second prompt.
    #[test]
    fn second_turn_reuses_the_first_prompt_exactly() {
        let model = tiny_model();
        // Window 8 in the fixture: both turns run well past several windows.
        let first_prompt: Vec<u32> = (0..30).map(|i| (i * 7 + 3) % 500).collect();
        let mut session = Session::new(model.new_cache(256).expect("cache"));
        let plan = session.plan_prefill(&first_prompt);
        assert_eq!(plan.cached_tokens, 0);
        session.feed(&model, &first_prompt).expect("prefill");
        session.mark_turn_start();
        // The first answer: tokens the next prompt will not repeat.
        for token in [11u32, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22] {
            session.feed(&model, &[token]).expect("decode");
        }

        let mut second_prompt = first_prompt.clone();
        second_prompt.extend([40u32, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50]);
        let plan = session.plan_prefill(&second_prompt);
        assert_eq!(
            plan,
            PrefillPlan {
                cached_tokens: first_prompt.len(),
                new_tokens: 11
            }
        );
        let reused = session
            .feed(&model, &second_prompt[plan.cached_tokens..])
            .expect("feed the new part");
        assert_eq!(session.tokens(), &second_prompt[..]);

        let mut fresh = Session::new(model.new_cache(256).expect("cache"));
        let expected = fresh.feed(&model, &second_prompt).expect("fresh prefill");
        let diff = max_abs_diff(&reused, &expected);
        assert!(diff <= 1e-3, "reused-prefix logits differ by {diff}");
    }

    /// Without a snapshot at the divergence point the session falls back to an earlier
    /// position it can restore exactly, and the result is still right.
    #[test]
    fn divergence_without_snapshot_falls_back_and_stays_exact() {
        let model = tiny_model();
        let first: Vec<u32> = (0..24).map(|i| (i * 5 + 1) % 500).collect();
        let mut session = Session::new(model.new_cache(128).expect("cache"));
        session.feed(&model, &first[..10]).expect("prefill");
        session.mark_turn_start();
        session.feed(&model, &first[10..]).expect("prefill rest");
        // Diverge at 20: the window (8) no longer holds 12..20 and no snapshot sits at 20.
        let mut second = first[..20].to_vec();
        second.extend([7u32, 8, 9]);
        let plan = session.plan_prefill(&second);
        assert_eq!(plan.cached_tokens, 10, "falls back to the snapshot at 10");
        let reused = session
            .feed(&model, &second[plan.cached_tokens..])
            .expect("re-feed");
        let mut fresh = Session::new(model.new_cache(128).expect("cache"));
        let expected = fresh.feed(&model, &second).expect("fresh");
        assert!(max_abs_diff(&reused, &expected) <= 1e-3);
    }

    /// A prefill stopped between layers leaves the cache as before it, and feeding the
    /// prompt again gives the logits of an uninterrupted prefill.
    #[test]
    fn a_prefill_stopped_between_layers_rolls_back_and_reruns_exactly() {
        let model = tiny_model();
        let prompt: Vec<u32> = (0..40).map(|i| (i * 11 + 2) % 500).collect();
        let mut session = Session::new(model.new_cache(128).expect("cache"));
        session.feed(&model, &prompt[..12]).expect("first part");
        let mut checks = 0;
        // Stop before the second layer: the first layer has already written its keys.
        let stopped = session
            .feed_unless(&model, &prompt[12..], &mut || {
                checks += 1;
                checks == 2
            })
            .expect("no error");
        assert!(stopped.is_none(), "the stop was honoured");
        assert_eq!(checks, 2, "asked before each layer, not after the chunk");
        assert_eq!(
            session.tokens(),
            &prompt[..12],
            "the interrupted chunk is rolled back"
        );
        let plan = session.plan_prefill(&prompt);
        assert_eq!(plan.cached_tokens, 12);
        let resumed = session
            .feed_unless(&model, &prompt[12..], &mut || false)
            .expect("no error")
            .expect("not stopped");
        let mut fresh = Session::new(model.new_cache(128).expect("cache"));
        let expected = fresh.feed(&model, &prompt).expect("fresh prefill");
        let diff = max_abs_diff(&resumed, &expected);
        assert!(
            diff <= 1e-3,
            "logits after a stopped prefill differ by {diff}"
        );
    }

    /// A session written out and restored into a new cache (f16, as on the CPU by default)
    /// serves the next prompt as the original would: same plan, bit-identical logits.
    #[test]
    fn a_restored_session_continues_bit_identically() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-a-int4");
        let model = GptOss::load(&dir, &Device::Cpu, Precision::Default).expect("int4 fixture");
        let first: Vec<u32> = (0..30).map(|i| (i * 7 + 3) % 500).collect();
        let mut original = Session::new(model.new_cache(128).expect("cache"));
        original.feed(&model, &first).expect("prefill");
        original.mark_turn_start();
        for token in [11u32, 12, 13, 14, 15, 16, 17, 18, 19, 20] {
            original.feed(&model, &[token]).expect("decode");
        }
        let mut bytes = Vec::new();
        original.write_cache(&mut bytes).expect("written");
        let layout = original.cache_layout().expect("layout");

        let mut restored = Session::new(model.new_cache(128).expect("cache"));
        restored
            .restore(original.tokens().to_vec(), &layout, &mut bytes.as_slice())
            .expect("restored");
        assert_eq!(restored.tokens(), original.tokens());

        let mut second = first.clone();
        second.extend([40u32, 41, 42, 43, 44]);
        let plan = original.plan_prefill(&second);
        assert_eq!(restored.plan_prefill(&second), plan);
        assert_eq!(plan.cached_tokens, first.len(), "rewinds to the snapshot");
        let expected = original
            .feed(&model, &second[plan.cached_tokens..])
            .expect("original");
        let got = restored
            .feed(&model, &second[plan.cached_tokens..])
            .expect("restored");
        assert_eq!(max_abs_diff(&got, &expected), 0.0);

        // Token ids that do not match the layout are refused and leave the session empty.
        let err = restored
            .restore(vec![1, 2], &layout, &mut bytes.as_slice())
            .expect_err("2 ids for 40 positions");
        assert!(
            err.to_string()
                .contains("2 token ids for 40 cached positions"),
            "{err}"
        );
        assert!(restored.is_empty());
    }

    #[test]
    fn identical_prompt_still_runs_its_last_token() {
        let model = tiny_model();
        let prompt: Vec<u32> = vec![5, 6, 7, 8];
        let mut session = Session::new(model.new_cache(64).expect("cache"));
        session.feed(&model, &prompt).expect("prefill");
        let plan = session.plan_prefill(&prompt);
        assert_eq!(plan.cached_tokens, 3);
        assert_eq!(plan.new_tokens, 1);
    }

    #[test]
    fn common_prefix_of_diverging_prompts() {
        assert_eq!(common_prefix_len(&[1, 2, 3, 4], &[1, 2, 9]), 2);
        assert_eq!(common_prefix_len(&[], &[1]), 0);
        assert_eq!(common_prefix_len(&[1, 2], &[1, 2, 3]), 2);
    }
}
