mod detector;
#[cfg(test)]
mod tests;

pub use detector::{Eicar, TEST_TRIGGER_NAME};
