//! laser-learner: the GRPO + LaSeR update.
