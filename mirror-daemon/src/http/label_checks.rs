//! Checks shared by the tests of every reason enum whose labels name metric values.

use std::collections::HashSet;
use std::fmt::Display;

/// Labels are unique, snake_case and start with `prefix`.
pub(crate) fn assert_labels(labels: &[&str], prefix: &str) {
    let unique: HashSet<&str> = labels.iter().copied().collect();
    assert_eq!(unique.len(), labels.len(), "labels repeat");
    for label in labels {
        assert!(
            label.starts_with(prefix),
            "{label} lacks the prefix {prefix:?}"
        );
        assert!(
            label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{label} is not snake_case"
        );
    }
}

/// Messages are lowercase, as error messages are here.
pub(crate) fn assert_lowercase_messages<T: Display>(reasons: impl IntoIterator<Item = T>) {
    for reason in reasons {
        let message = reason.to_string();
        assert_eq!(message, message.to_lowercase());
    }
}
