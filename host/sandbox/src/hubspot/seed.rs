//! Generated sandbox data of a chosen size, the same for the same seed:
//! companies, contacts, and deals spread over the sales stages, each won
//! deal with a company and one to three line items (decimal prices and
//! quantities).

use std::collections::BTreeMap;

use super::store::{DEAL_STAGES, ObjectType, Store};

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedData {
    /// Seed of the generator: the same seed gives the same data.
    pub seed: u64,
    /// Companies.
    pub companies: usize,
    /// Contacts.
    pub contacts: usize,
    /// Deals (every third one is `closedwon`).
    pub deals: usize,
}

impl SeedData {
    /// Nothing.
    pub const EMPTY: SeedData = SeedData {
        seed: 0,
        companies: 0,
        contacts: 0,
        deals: 0,
    };

    /// `size` contacts, `size / 4` companies (at least one) and `size / 2`
    /// deals.
    pub fn of_size(size: usize, seed: u64) -> SeedData {
        SeedData {
            seed,
            companies: (size / 4).max(1),
            contacts: size,
            deals: size / 2,
        }
    }
}

/// SplitMix64: small, fast, and deterministic everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items
            .get(self.below(items.len() as u64) as usize)
            .copied()
            .unwrap_or_default()
    }
}

const FIRST: [&str; 12] = [
    "Ada", "Bruno", "Chloé", "Dmitri", "Elif", "Farah", "Goran", "Hana", "Ines", "Jonas", "Kofi",
    "Lena",
];
const LAST: [&str; 12] = [
    "Lovelace", "Costa", "Martin", "Ivanov", "Yilmaz", "Haddad", "Novak", "Sato", "García", "Berg",
    "Mensah", "Schulz",
];
const CITIES: [(&str, &str); 6] = [
    ("Lyon", "FR"),
    ("Berlin", "DE"),
    ("Porto", "PT"),
    ("Leeds", "GB"),
    ("Austin", "US"),
    ("Gdańsk", "PL"),
];
const INDUSTRIES: [&str; 5] = [
    "COMPUTER_SOFTWARE",
    "RETAIL",
    "CONSTRUCTION",
    "FOOD_BEVERAGES",
    "LOGISTICS_AND_SUPPLY_CHAIN",
];
const PRODUCTS: [&str; 6] = [
    "Consulting day",
    "Annual licence",
    "Support plan",
    "Onboarding",
    "Hardware kit",
    "Training seat",
];

fn props(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// `cents` as a decimal string with two places (`1234` → `12.34`).
fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// Fill `store` with `data`, modification times spread over the hour
/// before `now_ms` (ascending with the ids, ties included).
pub fn seed(store: &mut Store, data: SeedData, now_ms: i64) {
    let mut rng = Rng(data.seed ^ 0x6E65_786F);
    let total = (data.companies + data.contacts + data.deals) as i64;
    let start = now_ms - 3_600_000;
    let step = if total > 0 { 3_000_000 / total } else { 0 };
    let mut tick = 0i64;
    let mut at = |rng: &mut Rng| {
        tick += 1;
        // Every seventh object shares its predecessor's millisecond.
        let t = start + step * (tick - (rng.below(7) == 0) as i64);
        (t - 86_400_000, t)
    };
    let mut companies = Vec::with_capacity(data.companies);
    for i in 0..data.companies {
        let (city, country) = CITIES[rng.below(CITIES.len() as u64) as usize];
        let name = format!(
            "{} {} {}",
            rng.pick(&LAST),
            rng.pick(&["GmbH", "SARL", "Ltd", "Inc", "Lda"]),
            i + 1
        );
        let (created, updated) = at(&mut rng);
        let c = store.insert(
            ObjectType::Companies,
            props(&[
                ("name", name),
                ("domain", format!("company{}.example.com", i + 1)),
                ("city", city.to_string()),
                ("country", country.to_string()),
                ("industry", rng.pick(&INDUSTRIES).to_string()),
            ]),
            created,
            updated,
        );
        companies.push(c.id);
    }
    for i in 0..data.contacts {
        let (city, country) = CITIES[rng.below(CITIES.len() as u64) as usize];
        let (first, last) = (rng.pick(&FIRST), rng.pick(&LAST));
        let (created, updated) = at(&mut rng);
        let stage = rng.pick(&["lead", "marketingqualifiedlead", "opportunity", "customer"]);
        let contact = store.insert(
            ObjectType::Contacts,
            props(&[
                ("firstname", first.to_string()),
                ("lastname", last.to_string()),
                ("email", format!("contact{}@example.com", i + 1)),
                (
                    "phone",
                    format!(
                        "+33 1 {:02} {:02} {:02} {:02}",
                        i % 100,
                        rng.below(100),
                        rng.below(100),
                        rng.below(100)
                    ),
                ),
                ("city", city.to_string()),
                ("country", country.to_string()),
                ("lifecyclestage", stage.to_string()),
            ]),
            created,
            updated,
        );
        if let Some(&company) = companies.get(i % companies.len().max(1)) {
            store.associate(
                ObjectType::Contacts,
                contact.id,
                ObjectType::Companies,
                company,
            );
        }
    }
    for i in 0..data.deals {
        let won = i % 3 == 0;
        let stage = if won {
            "closedwon"
        } else {
            // Any stage but `closedwon`: only won deals get line items.
            let open: Vec<&str> = DEAL_STAGES
                .iter()
                .copied()
                .filter(|s| *s != "closedwon")
                .collect();
            rng.pick(&open)
        };
        let (created, updated) = at(&mut rng);
        let mut lines = Vec::new();
        if won {
            for _ in 0..1 + rng.below(3) {
                let price = 1_000 + rng.below(200_000);
                let quantity = match rng.below(3) {
                    0 => format!("{}.5", rng.below(4)),
                    _ => (1 + rng.below(9)).to_string(),
                };
                lines.push((rng.pick(&PRODUCTS), money(price), quantity));
            }
        }
        let amount = if won {
            // Sum of price × quantity, exactly, in tenths of cents.
            let mills: u64 = lines
                .iter()
                .map(|(_, price, q)| {
                    let cents: u64 = price.replace('.', "").parse().unwrap_or(0);
                    let tenths: u64 = if let Some((a, b)) = q.split_once('.') {
                        a.parse::<u64>().unwrap_or(0) * 10 + b.parse::<u64>().unwrap_or(0)
                    } else {
                        q.parse::<u64>().unwrap_or(0) * 10
                    };
                    cents * tenths
                })
                .sum();
            format!("{}.{:03}", mills / 1000, mills % 1000)
        } else {
            money(10_000 + rng.below(5_000_000))
        };
        let deal = store.insert(
            ObjectType::Deals,
            props(&[
                (
                    "dealname",
                    format!("Deal {} — {}", i + 1, rng.pick(&PRODUCTS)),
                ),
                ("amount", amount),
                ("dealstage", stage.to_string()),
                ("pipeline", "default".to_string()),
                ("closedate", super::store::iso(updated + 86_400_000 * 7)),
                (
                    "deal_currency_code",
                    rng.pick(&["EUR", "USD", "GBP"]).to_string(),
                ),
            ]),
            created,
            updated,
        );
        if (won || rng.below(2) == 0)
            && let Some(&company) = companies.get(rng.below(companies.len() as u64) as usize)
        {
            store.associate(ObjectType::Deals, deal.id, ObjectType::Companies, company);
        }
        for (name, price, quantity) in lines {
            let item = store.insert(
                ObjectType::LineItems,
                props(&[
                    ("name", name.to_string()),
                    ("price", price),
                    ("quantity", quantity),
                    ("hs_sku", format!("SKU-{}", 100 + rng.below(900))),
                ]),
                created,
                updated,
            );
            store.associate(ObjectType::Deals, deal.id, ObjectType::LineItems, item.id);
        }
    }
}

/// Companies typed in twice, as people do in a CRM that has been used for
/// years: `(name, domain, phone)` of each copy, in pairs. The demo adds them
/// so `nexo survey` has duplicates inside the system to find: a misspelt
/// name, the same phone in another format under a legal form left out, and
/// the same company with its legal form punctuated differently.
pub const TYPED_TWICE: [[(&str, &str, &str); 2]; 3] = [
    [
        ("Acme Widgets Ltd", "acmewidgets.example.com", ""),
        ("ACME Widgetz", "acme-widgetz.example.com", ""),
    ],
    [
        (
            "Northwind Traders GmbH",
            "northwind.example.com",
            "+49 30 1234 5678",
        ),
        (
            "Northwind Traders",
            "northwind-traders.example.com",
            "030 12345678",
        ),
    ],
    [
        (
            "Blue Harbor Foods Inc",
            "blueharbor.example.com",
            "+1 512 555 0142",
        ),
        ("Blue Harbor Foods, Inc.", "", "(512) 555-0142"),
    ],
];

/// Add the [`TYPED_TWICE`] companies after what [`seed`] made (its records
/// stay as they are), modified just before `now_ms`, in pair order.
pub fn typed_twice(store: &mut Store, now_ms: i64) {
    let mut t = now_ms - 500_000;
    for (name, domain, phone) in TYPED_TWICE.iter().flatten() {
        t += 1_000;
        let mut p = vec![("name", name.to_string())];
        if !domain.is_empty() {
            p.push(("domain", domain.to_string()));
        }
        if !phone.is_empty() {
            p.push(("phone", phone.to_string()));
        }
        store.insert(ObjectType::Companies, props(&p), t - 86_400_000, t);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn dump(s: &Store) -> Vec<String> {
        ObjectType::ALL
            .iter()
            .flat_map(|&t| {
                s.live(t)
                    .map(move |o| format!("{t:?}{}{:?}", o.id, o.properties))
            })
            .collect()
    }

    #[test]
    fn same_seed_same_data_and_won_deals_have_companies_and_lines() {
        let (mut a, mut b) = (Store::default(), Store::default());
        seed(&mut a, SeedData::of_size(40, 7), 1_800_000_000_000);
        seed(&mut b, SeedData::of_size(40, 7), 1_800_000_000_000);
        assert_eq!(dump(&a), dump(&b));
        assert_eq!(a.count(ObjectType::Contacts), 40);
        let won: Vec<_> = a
            .live(ObjectType::Deals)
            .filter(|d| d.properties["dealstage"] == "closedwon")
            .collect();
        assert!(won.len() >= 6);
        for d in won {
            assert_eq!(
                a.associated(ObjectType::Deals, d.id, ObjectType::Companies)
                    .len(),
                1
            );
            let n = a
                .associated(ObjectType::Deals, d.id, ObjectType::LineItems)
                .len();
            assert!((1..=3).contains(&n));
        }
    }

    #[test]
    fn won_amount_is_the_exact_sum_of_the_lines() {
        assert_eq!(money(1234), "12.34");
    }
}
