//! Regexes as a scenario writes them, compiled once when the scenario is loaded: a
//! step or check holds the compiled form, so nothing can reach the runner unvalidated.
//!
//! Owns: [`Pattern`] (over text) and [`BytePattern`] (over the console's byte stream),
//! each keeping its source for messages and comparing by it.

use std::fmt;

/// A regex over text.
#[derive(Clone)]
pub struct Pattern {
    re: regex::Regex,
}

impl Pattern {
    pub fn new(source: &str) -> Result<Pattern, String> {
        regex::Regex::new(source).map(|re| Pattern { re }).map_err(|e| format!("not a valid regex: {e}"))
    }

    /// `^` and `$` match at line breaks: `^2$` is a line that is `2`, as people read
    /// command output.
    pub fn multi_line(source: &str) -> Result<Pattern, String> {
        regex::RegexBuilder::new(source)
            .multi_line(true)
            .build()
            .map(|re| Pattern { re })
            .map_err(|e| format!("not a valid regex: {e}"))
    }

    pub fn as_str(&self) -> &str {
        self.re.as_str()
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.re.is_match(text)
    }

    pub fn regex(&self) -> &regex::Regex {
        &self.re
    }
}

/// A regex over bytes (the serial console's stream).
#[derive(Clone)]
pub struct BytePattern {
    re: regex::bytes::Regex,
}

impl BytePattern {
    pub fn new(source: &str) -> Result<BytePattern, String> {
        regex::bytes::Regex::new(source)
            .map(|re| BytePattern { re })
            .map_err(|e| format!("not a valid regex: {e}"))
    }

    pub fn as_str(&self) -> &str {
        self.re.as_str()
    }

    pub fn regex(&self) -> &regex::bytes::Regex {
        &self.re
    }
}

macro_rules! by_source {
    ($t:ty) => {
        impl PartialEq for $t {
            fn eq(&self, other: &Self) -> bool {
                self.as_str() == other.as_str()
            }
        }
        impl Eq for $t {}
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "/{}/", self.as_str())
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

by_source!(Pattern);
by_source!(BytePattern);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_compile_once_and_compare_by_source() {
        assert_eq!(Pattern::new("a+").unwrap(), Pattern::new("a+").unwrap());
        assert!(Pattern::new("(").unwrap_err().contains("not a valid regex"));
        assert!(Pattern::multi_line("^2$").unwrap().is_match("1\n2\n3"));
        assert!(!Pattern::new("^2$").unwrap().is_match("1\n2\n3"));
        assert_eq!(format!("{:?}", BytePattern::new("x").unwrap()), "/x/");
    }
}
