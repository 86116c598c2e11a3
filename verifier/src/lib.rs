//! laser-verifier: grades final answers into the 0/1 verifier reward r_v.
