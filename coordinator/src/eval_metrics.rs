//! Evaluation metrics of a LaSeR policy, as plain functions over graded samples (LASER.md, "Test
//! time"). Each problem has k samples, each with its extracted final answer, the verifier reward
//! r_v and the self-reward r_s read after EOS. From these:
//!
//! - pass@1: the mean correctness of a sample (averaged per problem, then over problems);
//! - maj@k: the most frequent answer is correct;
//! - self-reward-weighted maj@k: each distinct answer scores the sum of its samples' clamp(r_s, 0, 1);
//! - best-of-k: the sample with the highest r_s is correct;
//! - self-verification: the policy says "correct" when clamp(r_s, 0, 1) > 0.5; samples with no
//!   extractable answer (or no r_s, e.g. truncated) score 0. Accuracy on truly correct and on truly
//!   incorrect samples, their harmonic mean (the F1 LASER.md defines), AUROC of r_s and the
//!   expected calibration error (ECE) of the clamped score as a probability of being correct;
//! - the AUROC of r_s within problems: pooled AUROC also rewards a read-out that only predicts
//!   which problems the policy solves, while a weighted vote needs r_s to rank the samples of one
//!   problem, which this measures;
//! - the same two AUROCs of the policy's own confidence, the mean token log-probability of the
//!   response: the reference a trained read-out should beat (if the policy's likelihood already
//!   separates one problem's right answers from its wrong ones, the information is in the model).
//!
//! Ties (two answers with the same vote or score, two samples with the same r_s) go to the one that
//! appears first, so the metrics are deterministic.

use serde::{Deserialize, Serialize};

/// One graded sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalSample {
    /// The extracted final answer in canonical form (equivalent answers must compare equal, e.g.
    /// the verifier's normalised extraction); `None` when the response has no final answer.
    pub answer: Option<String>,
    /// r_v: 1 correct, 0 incorrect.
    pub verifier_reward: f64,
    /// r_s = beta_v (log p(z_c | x, y) - c_ref); `None` when there is no read-out (truncated).
    pub self_reward: Option<f64>,
    /// The policy's mean (untempered) token log-probability of the response; `None` when unknown
    /// (samples saved before it was recorded).
    #[serde(default)]
    pub mean_logprob: Option<f64>,
}

impl EvalSample {
    pub fn is_correct(&self) -> bool {
        self.verifier_reward >= 0.5
    }

    /// The self-verification score in [0, 1]: clamp(r_s, 0, 1), or 0 without an answer or r_s.
    pub fn verification_score(&self) -> f64 {
        match (&self.answer, self.self_reward) {
            (Some(_), Some(r)) if r.is_finite() => r.clamp(0.0, 1.0),
            _ => 0.0,
        }
    }

    /// Whether the policy judges its own answer correct.
    pub fn predicted_correct(&self) -> bool {
        self.verification_score() > 0.5
    }
}

/// The k samples of one problem.
pub type ProblemSamples = Vec<EvalSample>;

/// Everything `coordinator eval` reports. Rates are in [0, 1]; `None` where undefined (e.g. the
/// accuracy on incorrect answers when every answer is correct).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub problems: usize,
    pub samples: usize,
    /// Largest number of samples of a problem (the k of maj@k).
    pub k: usize,
    pub pass_at_1: f64,
    pub maj_at_k: f64,
    pub self_weighted_maj_at_k: f64,
    pub best_of_k: f64,
    /// Of truly correct samples, the fraction judged correct.
    pub verify_acc_correct: Option<f64>,
    /// Of truly incorrect samples, the fraction judged incorrect.
    pub verify_acc_incorrect: Option<f64>,
    /// Harmonic mean of the two accuracies above.
    pub verify_f1: Option<f64>,
    /// Probability that a random correct sample has a higher r_s than a random incorrect one.
    pub auroc: Option<f64>,
    /// The same over pairs of a correct and an incorrect sample of the same problem (pooled over
    /// problems, ties count half); `None` when no problem has both.
    #[serde(default)]
    pub auroc_within: Option<f64>,
    /// Expected calibration error of clamp(r_s, 0, 1), [`ECE_BINS`] equal-width bins.
    pub ece: Option<f64>,
    /// [`auroc`](Self::auroc) and [`auroc_within`](Self::auroc_within) with the policy's mean
    /// token log-probability in place of r_s (the same rule: samples without an answer rank
    /// lowest); `None` when a sample has no recorded log-probability.
    #[serde(default)]
    pub logprob_auroc: Option<f64>,
    #[serde(default)]
    pub logprob_auroc_within: Option<f64>,
    /// Fraction of samples that are correct (equals pass@1 when every problem has k samples).
    pub sample_accuracy: f64,
    /// Fraction of samples without an extractable answer.
    pub no_answer_rate: f64,
}

/// Bins of the ECE.
pub const ECE_BINS: usize = 10;

/// Distinct answers of a problem in order of first appearance, with their samples.
fn answer_groups(samples: &[EvalSample]) -> Vec<(&str, Vec<&EvalSample>)> {
    let mut groups: Vec<(&str, Vec<&EvalSample>)> = Vec::new();
    for s in samples {
        let Some(a) = s.answer.as_deref() else {
            continue;
        };
        match groups.iter_mut().find(|(key, _)| *key == a) {
            Some((_, members)) => members.push(s),
            None => groups.push((a, vec![s])),
        }
    }
    groups
}

/// An answer is correct when its samples were graded correct (by majority, should a grader have
/// split them).
fn group_correct(members: &[&EvalSample]) -> bool {
    let correct = members.iter().filter(|s| s.is_correct()).count();
    2 * correct > members.len()
}

/// The first group with the largest `key` (ties go to the earlier group).
fn pick<'a, K: PartialOrd>(
    groups: &'a [(&'a str, Vec<&'a EvalSample>)],
    key: impl Fn(&[&EvalSample]) -> K,
) -> Option<&'a (&'a str, Vec<&'a EvalSample>)> {
    let mut best: Option<(&(&str, Vec<&EvalSample>), K)> = None;
    for g in groups {
        let k = key(&g.1);
        if best.as_ref().is_none_or(|(_, b)| k > *b) {
            best = Some((g, k));
        }
    }
    best.map(|(g, _)| g)
}

/// Majority vote: 1 when the most frequent answer is correct.
pub fn majority_vote(samples: &[EvalSample]) -> f64 {
    let groups = answer_groups(samples);
    pick(&groups, |m| m.len()).map_or(0.0, |g| f64::from(u8::from(group_correct(&g.1))))
}

/// Self-reward-weighted vote: each distinct answer scores the sum of its samples' clamped r_s
/// (ties: more votes, then first seen); 1 when the winner is correct.
pub fn self_weighted_vote(samples: &[EvalSample]) -> f64 {
    let groups = answer_groups(samples);
    pick(&groups, |m| {
        let score: f64 = m.iter().map(|s| s.verification_score()).sum();
        (score, m.len())
    })
    .map_or(0.0, |g| f64::from(u8::from(group_correct(&g.1))))
}

/// Best-of-k: 1 when the sample with the highest r_s (those without one rank last) is correct.
pub fn best_of_k(samples: &[EvalSample]) -> f64 {
    let rank = |s: &EvalSample| match s.self_reward {
        Some(r) if r.is_finite() && s.answer.is_some() => r,
        _ => f64::NEG_INFINITY,
    };
    let mut best: Option<&EvalSample> = None;
    for s in samples {
        if best.is_none_or(|b| rank(s) > rank(b)) {
            best = Some(s);
        }
    }
    best.map_or(0.0, |s| f64::from(u8::from(s.is_correct())))
}

/// Mann-Whitney AUROC of `scores` for separating positives from negatives (ties count half);
/// `None` when either class is empty.
pub fn auroc(scored: &[(f64, bool)]) -> Option<f64> {
    let mut v: Vec<(f64, bool)> = scored.to_vec();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let positives = v.iter().filter(|(_, p)| *p).count();
    let negatives = v.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    // Sum of the positives' ranks, tied scores sharing their average rank.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1].0 == v[i].0 {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += avg_rank * v[i..=j].iter().filter(|(_, p)| *p).count() as f64;
        i = j + 1;
    }
    let p = positives as f64;
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * negatives as f64))
}

/// Expected calibration error of probabilities `p` (in [0, 1]) against outcomes, `bins`
/// equal-width bins (1.0 falls in the last); `None` for no samples.
pub fn expected_calibration_error(scored: &[(f64, bool)], bins: usize) -> Option<f64> {
    if scored.is_empty() || bins == 0 {
        return None;
    }
    let mut count = vec![0usize; bins];
    let mut conf = vec![0.0; bins];
    let mut hits = vec![0.0; bins];
    for &(p, y) in scored {
        let p = p.clamp(0.0, 1.0);
        let b = ((p * bins as f64) as usize).min(bins - 1);
        count[b] += 1;
        conf[b] += p;
        hits[b] += f64::from(u8::from(y));
    }
    let n = scored.len() as f64;
    Some(
        (0..bins)
            .filter(|&b| count[b] > 0)
            .map(|b| (hits[b] - conf[b]).abs() / n)
            .sum(),
    )
}

/// AUROC over (correct, incorrect) pairs of the same problem: `scored` per problem, pairs pooled.
pub fn auroc_within(problems: &[Vec<(f64, bool)>]) -> Option<f64> {
    let (mut pairs, mut wins) = (0u64, 0.0);
    for p in problems {
        for (c, _) in p.iter().filter(|(_, ok)| *ok) {
            for (i, _) in p.iter().filter(|(_, ok)| !*ok) {
                pairs += 1;
                wins += if c > i {
                    1.0
                } else if c == i {
                    0.5
                } else {
                    0.0
                };
            }
        }
    }
    (pairs > 0).then(|| wins / pairs as f64)
}

fn harmonic_mean(a: f64, b: f64) -> f64 {
    if a + b == 0.0 {
        0.0
    } else {
        2.0 * a * b / (a + b)
    }
}

/// All metrics over `problems` (each with its k samples). Problems without samples are skipped.
pub fn evaluate(problems: &[ProblemSamples]) -> EvalReport {
    let problems: Vec<&ProblemSamples> = problems.iter().filter(|p| !p.is_empty()).collect();
    let n_problems = problems.len();
    let mean_over_problems = |f: &dyn Fn(&[EvalSample]) -> f64| {
        if n_problems == 0 {
            0.0
        } else {
            problems.iter().map(|p| f(p)).sum::<f64>() / n_problems as f64
        }
    };
    let pass_at_1 = mean_over_problems(&|p| {
        p.iter().filter(|s| s.is_correct()).count() as f64 / p.len() as f64
    });
    let all: Vec<&EvalSample> = problems.iter().flat_map(|p| p.iter()).collect();
    let n = all.len();
    let correct: Vec<&&EvalSample> = all.iter().filter(|s| s.is_correct()).collect();
    let incorrect: Vec<&&EvalSample> = all.iter().filter(|s| !s.is_correct()).collect();
    let rate = |set: &[&&EvalSample], f: &dyn Fn(&EvalSample) -> bool| {
        (!set.is_empty()).then(|| set.iter().filter(|s| f(s)).count() as f64 / set.len() as f64)
    };
    let verify_acc_correct = rate(&correct, &|s| s.predicted_correct());
    let verify_acc_incorrect = rate(&incorrect, &|s| !s.predicted_correct());
    let verify_f1 = match (verify_acc_correct, verify_acc_incorrect) {
        (Some(a), Some(b)) => Some(harmonic_mean(a, b)),
        _ => None,
    };
    // AUROC ranks by r_s itself (clamping would tie everything above 1); no read-out ranks lowest.
    let rank_score = |s: &EvalSample| match (&s.answer, s.self_reward) {
        (Some(_), Some(r)) if r.is_finite() => r,
        _ => f64::NEG_INFINITY,
    };
    let ranked: Vec<(f64, bool)> = all
        .iter()
        .map(|s| (rank_score(s), s.is_correct()))
        .collect();
    let ranked_by_problem: Vec<Vec<(f64, bool)>> = problems
        .iter()
        .map(|p| p.iter().map(|s| (rank_score(s), s.is_correct())).collect())
        .collect();
    // The policy's confidence, ranked under the same rule (only where every sample has one).
    let have_logprob = all.iter().all(|s| s.mean_logprob.is_some());
    let logprob_score = |s: &EvalSample| match (&s.answer, s.mean_logprob) {
        (Some(_), Some(l)) if l.is_finite() => l,
        _ => f64::NEG_INFINITY,
    };
    let by_logprob: Vec<Vec<(f64, bool)>> = problems
        .iter()
        .map(|p| {
            p.iter()
                .map(|s| (logprob_score(s), s.is_correct()))
                .collect()
        })
        .collect();
    let calibrated: Vec<(f64, bool)> = all
        .iter()
        .map(|s| (s.verification_score(), s.is_correct()))
        .collect();
    EvalReport {
        problems: n_problems,
        samples: n,
        k: problems.iter().map(|p| p.len()).max().unwrap_or(0),
        pass_at_1,
        maj_at_k: mean_over_problems(&majority_vote),
        self_weighted_maj_at_k: mean_over_problems(&self_weighted_vote),
        best_of_k: mean_over_problems(&best_of_k),
        verify_acc_correct,
        verify_acc_incorrect,
        verify_f1,
        auroc: auroc(&ranked),
        auroc_within: auroc_within(&ranked_by_problem),
        ece: expected_calibration_error(&calibrated, ECE_BINS),
        logprob_auroc: have_logprob.then(|| auroc(&by_logprob.concat())).flatten(),
        logprob_auroc_within: have_logprob.then(|| auroc_within(&by_logprob)).flatten(),
        sample_accuracy: if n == 0 {
            0.0
        } else {
            correct.len() as f64 / n as f64
        },
        no_answer_rate: if n == 0 {
            0.0
        } else {
            all.iter().filter(|s| s.answer.is_none()).count() as f64 / n as f64
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(answer: &str, correct: bool, r_s: f64) -> EvalSample {
        EvalSample {
            answer: Some(answer.to_string()),
            verifier_reward: f64::from(u8::from(correct)),
            self_reward: Some(r_s),
            mean_logprob: None,
        }
    }

    fn no_answer() -> EvalSample {
        EvalSample {
            answer: None,
            verifier_reward: 0.0,
            self_reward: Some(0.9),
            mean_logprob: None,
        }
    }

    const EPS: f64 = 1e-12;

    /// Problem A: the wrong answer "5" wins the plain vote 3-2, but the correct "4" has the larger
    /// self-reward mass (0.9 + 0.8 = 1.7 vs 0.2 + 0.3 + 0.1 = 0.6).
    fn problem_a() -> ProblemSamples {
        vec![
            s("5", false, 0.2),
            s("4", true, 0.9),
            s("5", false, 0.3),
            s("4", true, 0.8),
            s("5", false, 0.1),
        ]
    }

    /// Problem B: all wrong, one sample without an answer but a high r_s (it scores 0).
    fn problem_b() -> ProblemSamples {
        vec![s("7", false, 0.6), s("8", false, 0.4), no_answer()]
    }

    #[test]
    fn votes_hand_computed() {
        let a = problem_a();
        assert_eq!(majority_vote(&a), 0.0);
        assert_eq!(self_weighted_vote(&a), 1.0);
        assert_eq!(best_of_k(&a), 1.0);
        let b = problem_b();
        assert_eq!(majority_vote(&b), 0.0);
        assert_eq!(self_weighted_vote(&b), 0.0);
        // The no-answer sample's r_s 0.9 does not make it the best.
        assert_eq!(best_of_k(&b), 0.0);
        // Clamping: r_s 5.0 counts as 1, so two samples at 0.6 (1.2) beat it.
        let c = vec![s("1", false, 5.0), s("2", true, 0.6), s("2", true, 0.6)];
        assert_eq!(self_weighted_vote(&c), 1.0);
        // ...but best-of-k ranks by raw r_s.
        assert_eq!(best_of_k(&c), 0.0);
        // Ties go to the first answer seen.
        let tie = vec![s("1", true, 0.5), s("2", false, 0.5)];
        assert_eq!(majority_vote(&tie), 1.0);
        assert_eq!(self_weighted_vote(&tie), 1.0);
        assert_eq!(best_of_k(&tie), 1.0);
        assert_eq!(majority_vote(&[no_answer()]), 0.0);
    }

    #[test]
    fn report_hand_computed() {
        let r = evaluate(&[problem_a(), problem_b(), vec![]]);
        assert_eq!((r.problems, r.samples, r.k), (2, 8, 5));
        // pass@1 = (2/5 + 0/3) / 2.
        assert!((r.pass_at_1 - 0.2).abs() < EPS);
        assert!((r.sample_accuracy - 0.25).abs() < EPS);
        assert!((r.maj_at_k - 0.0).abs() < EPS);
        assert!((r.self_weighted_maj_at_k - 0.5).abs() < EPS);
        assert!((r.best_of_k - 0.5).abs() < EPS);
        assert!((r.no_answer_rate - 0.125).abs() < EPS);
        // Correct samples: r_s 0.9, 0.8 -> both judged correct. Incorrect: 0.2, 0.3, 0.1, 0.6,
        // 0.4, no-answer(0) -> 5 of 6 judged incorrect.
        assert_eq!(r.verify_acc_correct, Some(1.0));
        assert!((r.verify_acc_incorrect.unwrap() - 5.0 / 6.0).abs() < EPS);
        let f1 = 2.0 * (5.0 / 6.0) / (1.0 + 5.0 / 6.0);
        assert!((r.verify_f1.unwrap() - f1).abs() < EPS);
        // Both correct samples outrank all 6 incorrect ones.
        assert_eq!(r.auroc, Some(1.0));
        // Problem B has no correct sample; A's 2 x 3 pairs all rank the correct one higher.
        assert_eq!(r.auroc_within, Some(1.0));
        // ECE bins (width 0.1): 0.0 [no-answer: conf 0, 0 hits], 0.1 [0.1], 0.2 [0.2], 0.3 [0.3],
        // 0.4 [0.4], 0.6 [0.6], 0.8 [0.8, hit], 0.9 [0.9, hit]:
        // (0 + .1 + .2 + .3 + .4 + .6 + .2 + .1) / 8 = 1.9 / 8.
        assert!((r.ece.unwrap() - 1.9 / 8.0).abs() < 1e-9, "{:?}", r.ece);
    }

    /// A read-out that only knows which problem is easy: perfect pooled AUROC, chance within.
    #[test]
    fn within_problem_auroc_separates_difficulty_from_verification() {
        let easy = vec![s("1", true, 0.9), s("1", true, 0.9), s("2", false, 0.9)];
        let hard = vec![s("3", true, 0.1), s("4", false, 0.1), s("5", false, 0.1)];
        let r = evaluate(&[easy.clone(), hard.clone()]);
        // Pooled, 3 x 3 pairs: 4 wins (0.9 over 0.1), 4 ties, 1 loss = 6 / 9.
        assert!((r.auroc.unwrap() - 6.0 / 9.0).abs() < EPS, "{:?}", r.auroc);
        assert_eq!(
            r.auroc_within,
            Some(0.5),
            "equal r_s within a problem is chance"
        );
        let flipped = vec![s("3", true, 0.2), s("4", false, 0.1), s("5", false, 0.3)];
        // Pairs within: easy (0.9 vs 0.9) x2 = 1.0; flipped: 0.2 > 0.1 win, 0.2 < 0.3 loss.
        let r = evaluate(&[easy, flipped]);
        assert!((r.auroc_within.unwrap() - 2.0 / 4.0).abs() < EPS);
        assert_eq!(evaluate(&[problem_b()]).auroc_within, None);
    }

    /// The policy-confidence reference ranks by the mean log-probability, not by r_s, and is
    /// absent unless every sample has one.
    #[test]
    fn logprob_auroc_ranks_by_the_policys_likelihood() {
        let with = |mut x: EvalSample, l: f64| {
            x.mean_logprob = Some(l);
            x
        };
        // r_s says the opposite of the likelihood in problem A; B is all wrong.
        let a = vec![
            with(s("1", true, 0.1), -0.2),
            with(s("2", false, 0.9), -0.9),
            with(s("3", false, 0.8), -0.1),
        ];
        let b = vec![with(s("4", false, 0.5), -0.05)];
        let r = evaluate(&[a.clone(), b.clone()]);
        assert_eq!(r.auroc_within, Some(0.0));
        // Within A: -0.2 beats -0.9, loses to -0.1.
        assert!((r.logprob_auroc_within.unwrap() - 0.5).abs() < EPS);
        // Pooled: the correct -0.2 against -0.9, -0.1, -0.05: 1 of 3.
        assert!((r.logprob_auroc.unwrap() - 1.0 / 3.0).abs() < EPS);
        // A sample without an answer ranks lowest, as for r_s.
        let mut none = with(s("5", false, 0.0), -0.01);
        none.answer = None;
        let r = evaluate(&[vec![a[0].clone(), none]]);
        assert_eq!(r.logprob_auroc_within, Some(1.0));
        // One sample without a recorded log-probability: no figure rather than a partial one.
        let r = evaluate(&[vec![a[0].clone(), s("6", false, 0.5)]]);
        assert_eq!((r.logprob_auroc, r.logprob_auroc_within), (None, None));
    }

    #[test]
    fn auroc_matches_pair_counting() {
        // Brute-force reference: P(score_pos > score_neg) + 0.5 P(equal).
        let data: Vec<(f64, bool)> = (0..40)
            .map(|i| {
                let x = ((i * 37) % 11) as f64 / 10.0;
                (x, (i * 7) % 3 == 0)
            })
            .collect();
        let (mut num, mut den) = (0.0, 0.0);
        for &(a, pa) in &data {
            for &(b, pb) in &data {
                if pa && !pb {
                    den += 1.0;
                    num += if a > b {
                        1.0
                    } else if a == b {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
        }
        assert!((auroc(&data).unwrap() - num / den).abs() < EPS);
        // Invariants: perfect, reversed, constant, one class only.
        let perfect = [(0.1, false), (0.2, false), (0.8, true), (0.9, true)];
        assert_eq!(auroc(&perfect), Some(1.0));
        let reversed: Vec<(f64, bool)> = perfect.iter().map(|&(x, y)| (-x, y)).collect();
        assert_eq!(auroc(&reversed), Some(0.0));
        assert_eq!(auroc(&[(0.5, true), (0.5, false)]), Some(0.5));
        assert_eq!(auroc(&[(0.5, true)]), None);
    }

    #[test]
    fn ece_invariants() {
        // Bin [0.25, 0.5): confidence 0.25, 1 of 10 correct (gap 0.15); bin [0.75, 1): 3 of 4 (gap 0).
        let calibrated: Vec<(f64, bool)> = (0..10)
            .map(|i| (0.25, i < 1))
            .chain((0..4).map(|i| (0.75, i < 3)))
            .collect();
        let e = expected_calibration_error(&calibrated, 4).unwrap();
        assert!((e - (0.15 * 10.0 / 14.0)).abs() < EPS, "{e}");
        assert_eq!(
            expected_calibration_error(&[(1.0, true), (0.0, false)], 10),
            Some(0.0)
        );
        assert_eq!(
            expected_calibration_error(&[(1.0, false), (0.0, true)], 10),
            Some(1.0)
        );
        assert_eq!(expected_calibration_error(&[], 10), None);
    }

    #[test]
    fn undefined_metrics_are_none_and_chance_verifier_is_near_half() {
        let all_correct = vec![vec![s("1", true, 0.9), s("1", true, 0.1)]];
        let r = evaluate(&all_correct);
        assert_eq!(r.verify_acc_correct, Some(0.5));
        assert_eq!(r.verify_acc_incorrect, None);
        assert_eq!(r.verify_f1, None);
        assert_eq!(r.auroc, None);
        // A verifier that says "correct" for everything has F1 0 (it never rejects).
        let yes_man = vec![vec![s("1", true, 1.0), s("2", false, 1.0)]];
        assert_eq!(evaluate(&yes_man).verify_f1, Some(0.0));
        // A constant r_s carries no information: AUROC 0.5.
        let constant: Vec<ProblemSamples> = (0..10)
            .map(|i| vec![s("a", i % 2 == 0, 0.3), s("b", i % 3 == 0, 0.3)])
            .collect();
        assert_eq!(evaluate(&constant).auroc, Some(0.5));
        let empty = evaluate(&[]);
        assert_eq!((empty.problems, empty.pass_at_1, empty.ece), (0, 0.0, None));
    }

    #[test]
    fn votes_bound_each_other() {
        // With k = 1 every vote is the sample itself.
        let single: Vec<ProblemSamples> = (0..20)
            .map(|i| vec![s(&i.to_string(), i % 3 == 0, (i as f64) / 20.0)])
            .collect();
        let r = evaluate(&single);
        assert!((r.maj_at_k - r.pass_at_1).abs() < EPS);
        assert!((r.self_weighted_maj_at_k - r.pass_at_1).abs() < EPS);
        assert!((r.best_of_k - r.pass_at_1).abs() < EPS);
        // A perfect self-verifier: weighted vote and best-of-k are correct whenever any sample is.
        let perfect: Vec<ProblemSamples> = (0..30)
            .map(|i| {
                (0..4)
                    .map(|j| {
                        let ok = (i + j) % 5 == 0;
                        s(if ok { "x" } else { "y" }, ok, f64::from(u8::from(ok)))
                    })
                    .collect()
            })
            .collect();
        let r = evaluate(&perfect);
        let any_correct = perfect
            .iter()
            .filter(|p| p.iter().any(EvalSample::is_correct))
            .count() as f64
            / perfect.len() as f64;
        assert!((r.self_weighted_maj_at_k - any_correct).abs() < EPS);
        assert!((r.best_of_k - any_correct).abs() < EPS);
        assert!(r.self_weighted_maj_at_k >= r.maj_at_k);
        assert_eq!(r.verify_f1, Some(1.0));
        assert_eq!(r.ece, Some(0.0));
    }
}
