//! Matching before the first sync, timed: N source customers against N
//! destination customers (default 10 000 and 100 000), about 60% of them
//! already in the destination under variant spellings, e-mails in other
//! case and phones in other formats, some namesakes, the rest new. Prints
//! the time and the verdicts of each size; asserts nothing.
//!
//! `cargo bench -p nexo-sync --bench matching [-- N…]`

use std::time::Instant;

use nexo_sync::matching::{Record, customer_keys, match_records};

/// A small deterministic generator.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

const FIRST: &[&str] = &[
    "Acme", "Bright", "Nordlys", "Meridian", "Orbit", "Zephyr", "García", "Müller", "Silva",
    "Kowalski", "Dupont", "Rossi", "Novak", "Jensen", "Haas", "Olsen",
];
const SECOND: &[&str] = &[
    "Trading",
    "Logistics",
    "Labs",
    "Bau",
    "Consulting",
    "Foods",
    "Textil",
    "Media",
    "Systems",
    "Partners",
];
const FORMS: &[&str] = &["GmbH", "Ltd", "S.L.", "AG", "Inc.", "", "S.A.", "AS"];
const COUNTRIES: &[&str] = &["DE", "ES", "GB", "NO", "FR", "PT", "IT", "PL"];

fn rec(fields: &[(&str, String)]) -> Record {
    fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// Records with their ids.
type Records = Vec<(String, Record)>;

/// `(source, destination)` of `n` records each.
fn world(n: usize, seed: u64) -> (Records, Records) {
    let mut dice = Lcg(seed);
    let mut dest = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!(
            "{} {} {} {}",
            FIRST[dice.next(FIRST.len() as u64) as usize],
            SECOND[dice.next(SECOND.len() as u64) as usize],
            i,
            FORMS[dice.next(FORMS.len() as u64) as usize]
        );
        let country = COUNTRIES[dice.next(COUNTRIES.len() as u64) as usize].to_string();
        dest.push((
            format!("D{i:07}"),
            rec(&[
                ("name", name),
                ("country", country),
                ("email", format!("Contact{i}@Example.COM")),
                (
                    "phone",
                    format!("+49 30 {:04} {:04}", i / 10_000, i % 10_000),
                ),
            ]),
        ));
    }
    let mut source = Vec::with_capacity(n);
    for i in 0..n {
        let existing = dice.next(10) < 6;
        let r = if existing {
            let (_, d) = &dest[dice.next(n as u64) as usize];
            // The same customer, typed by someone else.
            match dice.next(4) {
                0 => rec(&[("email", d["email"].to_lowercase())]),
                1 => rec(&[("phone", format!("0{}", &d["phone"][4..].replace(' ', "")))]),
                2 => rec(&[
                    ("name", d["name"].to_uppercase()),
                    ("country", d["country"].to_lowercase()),
                ]),
                _ => rec(&[("name", d["name"].replace(' ', "  "))]),
            }
        } else {
            rec(&[
                ("name", format!("New Customer {i}")),
                ("email", format!("new{i}@example.org")),
            ])
        };
        source.push((format!("S{i:07}"), r));
    }
    (source, dest)
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10_000, 100_000]
    } else {
        sizes
    };
    let keys = customer_keys(0.92);
    for n in sizes {
        let (source, dest) = world(n, 0x5eed);
        let started = Instant::now();
        let m = match_records(&keys, &source, &dest);
        let took = started.elapsed();
        let (sure, uncertain, none) = m.counts();
        println!(
            "matching {n} x {n} customers: {:.3} s ({sure} sure, {uncertain} to review, {none} new)",
            took.as_secs_f64()
        );
    }
}
