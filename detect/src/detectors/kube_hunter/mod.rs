mod detector;
#[cfg(test)]
mod tests;

pub use detector::{KubeHunter, META};
