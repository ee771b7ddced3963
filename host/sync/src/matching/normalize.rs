//! The one normalisation both sides of a match go through, so "ACME
//! Trading GmbH", "Acme  Trading" and "acme trading gmbh." compare equal,
//! "+49 30 1234 5678" meets "030 12345678", and "Ana@Example.COM" meets
//! "ana@example.com". Every function is pure and gives `None` for a value
//! that says nothing (empty, or too short to be a key).

use unicode_normalization::UnicodeNormalization;

/// How a field's value is made comparable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Normalizer {
    /// An e-mail address: trimmed, lower-cased.
    Email,
    /// A phone number: its last nine digits (country code, trunk zero and
    /// punctuation dropped), at least seven digits.
    Phone,
    /// A tax or VAT id: letters and digits, upper-cased, a two-letter
    /// country prefix dropped.
    TaxId,
    /// A person's or company's name: accents, case, punctuation and legal
    /// forms (GmbH, S.L., Ltd…) dropped, whitespace collapsed.
    Name,
    /// Free text: accents and case dropped, whitespace collapsed.
    Text,
    /// An identifier (SKU, invoice number): letters and digits only,
    /// upper-cased.
    Code,
    /// A money amount: a decimal number with two places.
    Amount,
    /// A date: its `YYYY-MM-DD` part.
    Date,
}

impl Normalizer {
    /// `value` normalised, or none when it says nothing.
    pub fn apply(self, value: &str) -> Option<String> {
        let out = match self {
            Normalizer::Email => email(value),
            Normalizer::Phone => phone(value),
            Normalizer::TaxId => tax_id(value),
            Normalizer::Name => name(value),
            Normalizer::Text => text(value),
            Normalizer::Code => code(value),
            Normalizer::Amount => amount(value),
            Normalizer::Date => date(value),
        };
        out.filter(|s| !s.is_empty())
    }
}

/// Lower case without accents, every run of non-alphanumerics one space.
fn folded(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut space = true;
    for c in value
        .nfkd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
    {
        let c = match c {
            'ß' => 's',
            'ø' | 'Ø' => 'o',
            'æ' | 'Æ' => 'a',
            'ł' | 'Ł' => 'l',
            'đ' | 'Đ' => 'd',
            c => c,
        };
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
            space = false;
        } else if !space {
            out.push(' ');
            space = true;
        }
    }
    if out.ends_with(' ') {
        out.pop();
    }
    out
}

/// Legal forms, as they read once folded and with single letters joined
/// ("S.L." → "sl", "s. a. r. l." → "sarl").
const LEGAL_FORMS: &[&str] = &[
    "ab",
    "ag",
    "aps",
    "as",
    "asa",
    "bv",
    "bvba",
    "cie",
    "co",
    "corp",
    "corporation",
    "cv",
    "eg",
    "ek",
    "ev",
    "gbr",
    "gmbh",
    "gmbhcokg",
    "inc",
    "incorporated",
    "kft",
    "kg",
    "kgaa",
    "llc",
    "llp",
    "lp",
    "ltd",
    "ltda",
    "limited",
    "nv",
    "oy",
    "oyj",
    "ohg",
    "plc",
    "pty",
    "sa",
    "sab",
    "sae",
    "sarl",
    "sas",
    "sau",
    "scs",
    "sl",
    "sll",
    "slu",
    "snc",
    "spa",
    "sp",
    "spzoo",
    "sro",
    "srl",
    "ug",
    "zoo",
];

/// Join runs of single-letter words: "s l" → "sl", "g m b h" → "gmbh".
fn join_initials(words: Vec<&str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut run = String::new();
    for w in words {
        if w.chars().count() == 1 {
            run.push_str(w);
            continue;
        }
        if !run.is_empty() {
            out.push(std::mem::take(&mut run));
        }
        out.push(w.to_string());
    }
    if !run.is_empty() {
        out.push(run);
    }
    out
}

/// A name: folded, legal forms and "&"/"and" dropped from the end.
pub fn name(value: &str) -> Option<String> {
    let folded = folded(&value.replace('&', " and "));
    let mut words = join_initials(folded.split(' ').filter(|w| !w.is_empty()).collect());
    // Legal forms trail the name ("Acme Trading GmbH & Co. KG").
    while words.len() > 1
        && words
            .last()
            .is_some_and(|w| LEGAL_FORMS.contains(&w.as_str()) || w == "and")
    {
        words.pop();
    }
    Some(words.join(" "))
}

/// Whether two names carry different numbers ("Store 12", "Store 13"):
/// however alike the letters, those are two things.
pub fn numbers_differ(a: &str, b: &str) -> bool {
    let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
    digits(a) != digits(b)
}

/// Free text: folded.
pub fn text(value: &str) -> Option<String> {
    Some(folded(value))
}

/// An e-mail address.
pub fn email(value: &str) -> Option<String> {
    let v = value.trim().to_lowercase();
    v.contains('@').then_some(v)
}

/// A phone number's last nine digits.
pub fn phone(value: &str) -> Option<String> {
    let digits: String = value.chars().filter(char::is_ascii_digit).collect();
    if digits.len() < 7 {
        return None;
    }
    let start = digits.len().saturating_sub(9);
    Some(digits[start..].to_string())
}

/// Country prefixes of VAT numbers (the EU's, and the neighbours' that
/// write theirs the same way).
const VAT_PREFIXES: &[&str] = &[
    "AT", "BE", "BG", "CH", "CY", "CZ", "DE", "DK", "EE", "EL", "ES", "FI", "FR", "GB", "HR", "HU",
    "IE", "IT", "LT", "LU", "LV", "MT", "NL", "NO", "PL", "PT", "RO", "SE", "SI", "SK", "XI",
];

/// A tax id: alphanumerics upper-cased, a VAT country prefix dropped
/// ("DE 123 456 789" and "123456789", "ESB12345678" and "B12345678").
pub fn tax_id(value: &str) -> Option<String> {
    let v: String = value
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_uppercase();
    let bare = VAT_PREFIXES
        .iter()
        .find(|p| v.len() >= p.len() + 6 && v.starts_with(*p))
        .map_or(v.as_str(), |p| &v[p.len()..]);
    (bare.len() >= 4).then(|| bare.to_string())
}

/// An identifier: alphanumerics, upper-cased.
pub fn code(value: &str) -> Option<String> {
    Some(
        value
            .chars()
            .filter(|c| c.is_alphanumeric())
            .collect::<String>()
            .to_uppercase(),
    )
}

/// An amount with two decimal places ("1,234.5" and "1234.50" agree).
pub fn amount(value: &str) -> Option<String> {
    let cleaned: String = value
        .trim()
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '.' || *c == '-')
        .collect();
    let n: rust_decimal::Decimal = cleaned.parse().ok()?;
    Some(format!("{:.2}", n.round_dp(2)))
}

/// A date's `YYYY-MM-DD`.
pub fn date(value: &str) -> Option<String> {
    let v = value.trim();
    let head = v.get(..10)?;
    let ok = head.bytes().enumerate().all(|(i, b)| match i {
        4 | 7 => b == b'-',
        _ => b.is_ascii_digit(),
    });
    ok.then(|| head.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn names_meet_across_case_accents_punctuation_and_legal_forms() {
        let same = [
            ("ACME Trading GmbH", "acme trading"),
            ("Acme  Trading G.m.b.H.", "acme trading"),
            ("Müller & Söhne KG", "muller and sohne"),
            ("Construcciones García S.L.", "construcciones garcia"),
            ("Société Générale S.A.", "societe generale"),
            ("Bright Ltd.", "bright"),
            ("Nordlys AS", "nordlys"),
            ("Acme Trading GmbH & Co. KG", "acme trading"),
        ];
        for (raw, want) in same {
            assert_eq!(name(raw).as_deref(), Some(want), "{raw}");
        }
        // A name that is only a legal form keeps it rather than vanish.
        assert_eq!(name("Ltd").as_deref(), Some("ltd"));
    }

    #[test]
    fn phones_emails_and_tax_ids_meet_in_their_other_formats() {
        assert_eq!(phone("+49 30 1234 5678"), phone("030 12345678"));
        assert_eq!(phone("0049 (30) 1234-5678"), phone("030/12345678"));
        assert_ne!(phone("030 12345678"), phone("030 12345679"));
        assert_eq!(phone("12 34"), None, "too short to be a key");
        assert_eq!(
            email(" Ana.Lopez@Example.COM "),
            email("ana.lopez@example.com")
        );
        assert_eq!(email("not an address"), None);
        assert_eq!(tax_id("DE 123 456 789"), tax_id("123456789"));
        assert_eq!(tax_id("es-b12345678"), tax_id("B12345678"));
        assert_eq!(amount("1,234.5"), Some("1234.50".into()));
        assert_eq!(
            amount("1234.505"),
            Some("1234.50".into()),
            "banker's rounding of a half"
        );
        assert_eq!(date("2026-11-30T10:00:00Z"), Some("2026-11-30".into()));
        assert_eq!(date("30/11/2026"), None);
        assert_eq!(Normalizer::Name.apply("  "), None);
    }
}
