mod detector;
#[cfg(test)]
mod tests;

pub use detector::{META, SensitiveMount};
