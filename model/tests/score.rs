//! The teacher-forced scoring pass shares each prompt's prefix between the items that repeat it
//! (GRPO's n samples per prompt). Sharing must change nothing: every item's log-probs, and the
//! gradient of a loss over them, equal those of the items scored one at a time.

mod common;

use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use common::*;
use laser_model::backend::{Cpu, CpuDevice};
use laser_model::{ScoreItem, Transformer, score};

type Ad = Autodiff<Cpu>;

/// A loss that gives every response position and the read-out its own weight.
fn weighted_loss(
    model: &Transformer<Ad>,
    items: &[ScoreItem<'_>],
    z_c: u32,
    row0: usize,
) -> (Tensor<Ad, 1>, Vec<f32>) {
    let out = score(model, items, z_c).unwrap();
    let [b, width] = out.response_logprobs.dims();
    let w: Vec<f32> = (0..b * width)
        .map(|i| {
            let (row, t) = (row0 + i / width, i % width);
            0.3 + ((row * 7 + t * 3) % 11) as f32 / 10.0
        })
        .collect();
    let w = Tensor::<Ad, 2>::from_data(TensorData::new(w, [b, width]), &CpuDevice::default());
    let picked = out.response_logprobs.clone();
    let values: Vec<f32> = picked
        .clone()
        .inner()
        .into_data()
        .to_vec::<f32>()
        .unwrap()
        .into_iter()
        .chain(
            out.self_reward_logprob
                .clone()
                .inner()
                .into_data()
                .to_vec::<f32>()
                .unwrap(),
        )
        .collect();
    let loss = (picked * w).sum() + out.self_reward_logprob.sum() * 0.7;
    (loss, values)
}

fn grads_of<B: Backend>(
    m: &Transformer<Autodiff<B>>,
    grads: &<Autodiff<B> as burn::tensor::backend::AutodiffBackend>::Gradients,
) -> Vec<Vec<f32>> {
    let last = m.layers.len() - 1;
    [
        m.embed_tokens.val(),
        m.layers[0].self_attn.k_proj.weight.val(),
        m.layers[0].self_attn.q_proj.weight.val(),
        m.layers[last].mlp.down_proj.weight.val(),
    ]
    .into_iter()
    .map(|p| {
        p.grad(grads)
            .unwrap()
            .into_data()
            .convert::<f32>()
            .to_vec()
            .unwrap()
    })
    .collect()
}

#[test]
fn shared_prompts_score_and_differentiate_as_separate_items() {
    for name in FIXTURES {
        let p = load(name);
        let model: Transformer<Ad> =
            Transformer::from_weights(&p.model.config, p.model.to_weights(), &CpuDevice::default())
                .unwrap();
        let z_c = 3;
        let (long, short) = (vec![1u32, 10, 20, 30, 40], vec![1u32, 7]);
        // Two prompts, one repeated out of order; responses of different lengths.
        let responses = [
            vec![5u32, 6, 7, 2],
            vec![8, 2],
            vec![9, 9, 9, 9, 9, 2],
            vec![4, 2],
            vec![11],
        ];
        let prompts = [&long, &long, &short, &long, &short];
        let items: Vec<ScoreItem<'_>> = prompts
            .iter()
            .zip(&responses)
            .map(|(p, r)| ScoreItem {
                prompt: p,
                response: r,
            })
            .collect();

        let (loss, together) = weighted_loss(&model, &items, z_c, 0);
        let together_grads = grads_of(&model, &loss.backward());

        let width = responses.iter().map(Vec::len).max().unwrap();
        let mut summed: Option<Vec<Vec<f32>>> = None;
        for (i, item) in items.iter().enumerate() {
            let (loss, alone) = weighted_loss(&model, std::slice::from_ref(item), z_c, i);
            let len = item.response.len();
            for t in 0..len {
                let (a, b) = (alone[t], together[i * width + t]);
                assert!(
                    (a - b).abs() < 1e-5,
                    "{name} item {i} token {t}: alone {a}, shared {b}"
                );
            }
            let (a, b) = (alone[len], together[items.len() * width + i]);
            assert!(
                (a - b).abs() < 1e-5,
                "{name} item {i} read-out: alone {a}, shared {b}"
            );
            let g = grads_of(&model, &loss.backward());
            summed = Some(match summed {
                None => g,
                Some(s) => s
                    .iter()
                    .zip(&g)
                    .map(|(x, y)| x.iter().zip(y).map(|(a, b)| a + b).collect())
                    .collect(),
            });
        }
        for (k, (want, got)) in summed.unwrap().iter().zip(&together_grads).enumerate() {
            let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
            for (j, (a, b)) in want.iter().zip(got).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-4 * (1.0 + scale),
                    "{name} parameter {k}[{j}]: separate {a}, shared {b}"
                );
            }
        }
    }
}
