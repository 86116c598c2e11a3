//! The whole model through `score` with the kernels (`Autodiff<Flex>`) against burn's own ops and
//! autodiff (`Autodiff<Flex, BalancedCheckpointing>`, which the kernels leave alone): values and
//! every parameter's gradient.

use burn::backend::Autodiff;
use burn::tensor::Tensor;

use crate::backend::{Cpu, CpuDevice};
use crate::kernels::test_support::{Ad, close, simd_available};

/// The whole model through `score` on a left-padded batch: values and every parameter's
/// gradient with the fused ops (`Autodiff<Flex>`) against burn's own ops and autodiff
/// (`Autodiff<Flex, BalancedCheckpointing>`, which these ops leave alone).
#[test]
fn a_model_scored_with_the_fused_ops_has_burns_gradients() {
    let dims = crate::tiny::TinyDims {
        hidden_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        intermediate_size: 48,
        max_position_embeddings: 64,
    };
    let pairs = vec![
        (vec![5u32, 9, 14], vec![7u32, 8, 2]),
        (vec![3u32, 4, 5, 6, 7, 8], vec![11u32, 2]),
    ];
    model_gradients_match(dims, &pairs);
}

/// The default job's model on a batch of its size: 32 sequences of 20-40 tokens, so every op
/// runs several parallel blocks.
#[test]
fn the_default_model_on_a_full_batch_has_burns_gradients() {
    let pairs: Vec<(Vec<u32>, Vec<u32>)> = (0..32u32)
        .map(|i| {
            let p = (0..12 + i % 9)
                .map(|t| (t * 31 + i * 7) % 400 + 1)
                .collect();
            let r = (0..8 + (i * 5) % 23)
                .map(|t| (t * 17 + i * 13) % 400 + 1)
                .collect();
            (p, r)
        })
        .collect();
    model_gradients_match(crate::tiny::TinyDims::default(), &pairs);
}

fn model_gradients_match(dims: crate::tiny::TinyDims, pairs: &[(Vec<u32>, Vec<u32>)]) {
    use crate::transformer::Transformer;
    use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
    type Ref = Autodiff<Cpu, BalancedCheckpointing>;
    if !simd_available() {
        return;
    }
    let device = CpuDevice::default();
    let config = crate::tiny::config(dims).unwrap();
    let weights = || crate::tiny::init_weights(&config, 3);
    let fused = Transformer::<Ad>::from_weights(&config, weights(), &device).unwrap();
    let reference = Transformer::<Ref>::from_weights(&config, weights(), &device).unwrap();
    let items: Vec<crate::ScoreItem> = pairs
        .iter()
        .map(|(p, r)| crate::ScoreItem {
            prompt: p,
            response: r,
        })
        .collect();
    let z_c = 17;
    let f = crate::score(&fused, &items, z_c).unwrap();
    let r = crate::score(&reference, &items, z_c).unwrap();
    close(
        f.response_logprobs.clone().inner(),
        r.response_logprobs.clone().inner(),
        1e-5,
        "response log-probs",
    );
    close(
        f.self_reward_logprob.clone().inner(),
        r.self_reward_logprob.clone().inner(),
        1e-5,
        "self-reward log-prob",
    );
    let f_loss = f.response_logprobs.sum() + f.self_reward_logprob.sum() * 0.5;
    let r_loss = r.response_logprobs.sum() + r.self_reward_logprob.sum() * 0.5;
    let (fg, rg) = (f_loss.backward(), r_loss.backward());
    let (fp, rp) = (param_grads(&fused, &fg), param_grads(&reference, &rg));
    assert_eq!(fp.len(), rp.len());
    for ((name, a), (_, b)) in fp.iter().zip(&rp) {
        assert!(
            !a.is_empty() && a.len() == b.len(),
            "{name}: a gradient each"
        );
        let scale = b.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-4 * (1.0 + scale),
                "{name}[{i}]: {x} vs {y} (largest {scale})"
            );
        }
    }
}

/// Every parameter's gradient, by name.
fn param_grads<B: burn::tensor::backend::AutodiffBackend>(
    m: &crate::transformer::Transformer<B>,
    g: &B::Gradients,
) -> Vec<(String, Vec<f32>)> {
    fn v<B: burn::tensor::backend::AutodiffBackend, const D: usize>(
        t: Tensor<B, D>,
        g: &B::Gradients,
    ) -> Vec<f32> {
        t.grad(g)
            .map(|t| t.into_data().convert::<f32>().into_vec().unwrap())
            .unwrap_or_default()
    }
    let mut out = vec![("embed_tokens".to_string(), v(m.embed_tokens.val(), g))];
    for (i, l) in m.layers.iter().enumerate() {
        let a = &l.self_attn;
        for (name, w) in [
            ("q_proj", &a.q_proj),
            ("k_proj", &a.k_proj),
            ("v_proj", &a.v_proj),
            ("o_proj", &a.o_proj),
            ("gate_proj", &l.mlp.gate_proj),
            ("up_proj", &l.mlp.up_proj),
            ("down_proj", &l.mlp.down_proj),
        ] {
            out.push((format!("{i}.{name}"), v(w.weight.val(), g)));
        }
        out.push((
            format!("{i}.input_layernorm"),
            v(l.input_layernorm.weight.val(), g),
        ));
        out.push((
            format!("{i}.post_attention_layernorm"),
            v(l.post_attention_layernorm.weight.val(), g),
        ));
    }
    out.push(("norm".to_string(), v(m.norm.weight.val(), g)));
    out
}
