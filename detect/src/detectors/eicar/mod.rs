mod detector;
#[cfg(test)]
mod tests;

pub use detector::{Eicar, META, TEST_TRIGGER_NAME};
