//! Phone numbers as recipients give them: normalised once, compared by
//! their digits.

/// Normalise a phone number: drop spaces, dashes, dots and parentheses;
/// accept an optional leading `+` and 3 to 20 digits.
pub(crate) fn normalize_number(s: &str) -> Option<String> {
    let t: String = s
        .trim()
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    let digits = t.strip_prefix('+').unwrap_or(&t);
    let ok = (3..=20).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
    ok.then_some(t)
}

/// The digits of a number: how the STOP list keys it.
pub(crate) fn digits(n: &str) -> String {
    n.chars().filter(|c| c.is_ascii_digit()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_normalised_or_refused() {
        assert_eq!(
            normalize_number(" +86 138-0013 8000 ").as_deref(),
            Some("+8613800138000")
        );
        assert_eq!(normalize_number("12345").as_deref(), Some("12345"));
        for bad in ["", "+", "12", "abc123", "++123", "1".repeat(21).as_str()] {
            assert_eq!(normalize_number(bad), None, "{bad:?}");
        }
        assert_eq!(digits("+86 (138) 0013"), "861380013");
    }
}
