//! The matcher's verdicts on the cases going live brings: variant
//! spellings, e-mails in other case, phones in other formats, true
//! namesakes, two records claiming one, products and invoices.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

fn rec(id: &str, fields: &[(&str, &str)]) -> (String, Record) {
    (
        id.to_string(),
        fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn verdict<'a>(m: &'a Matches, id: &str) -> &'a Verdict {
    m.verdicts.get(id).unwrap()
}

fn sure_of(m: &Matches, id: &str) -> Option<(String, String)> {
    match verdict(m, id) {
        Verdict::Sure(c) => Some((c.id.clone(), c.key.clone())),
        _ => None,
    }
}

#[test]
fn customers_link_by_their_most_trusted_key_in_any_spelling() {
    let books = vec![
        rec(
            "B1",
            &[
                ("name", "ACME Trading GmbH"),
                ("email", "info@acme.de"),
                ("tax_id", "DE123456789"),
            ],
        ),
        rec(
            "B2",
            &[
                ("name", "Construcciones García S.L."),
                ("email", "Obras@Garcia.ES"),
                ("country", "ES"),
            ],
        ),
        rec(
            "B3",
            &[
                ("name", "Bright Ltd"),
                ("phone", "+44 20 7946 0958"),
                ("country", "GB"),
            ],
        ),
        rec("B4", &[("name", "Nordlys AS"), ("country", "NO")]),
    ];
    let crm = vec![
        // Tax id in another format, name spelled differently.
        rec("C1", &[("name", "Acme Trading"), ("tax_id", "123 456 789")]),
        // E-mail in another case.
        rec(
            "C2",
            &[
                ("name", "Garcia Construcciones"),
                ("email", "obras@garcia.es"),
            ],
        ),
        // Phone in national format.
        rec("C3", &[("name", "Bright"), ("phone", "020 7946 0958")]),
        // Only name and country, in other case and without the legal form.
        rec("C4", &[("name", "NORDLYS"), ("country", "no")]),
        // Nothing like it.
        rec("C5", &[("name", "Zephyr Labs"), ("email", "hi@zephyr.io")]),
    ];
    let m = match_records(&customer_keys(0.9), &crm, &books);
    assert_eq!(sure_of(&m, "C1"), Some(("B1".into(), "tax-id".into())));
    assert_eq!(sure_of(&m, "C2"), Some(("B2".into(), "email".into())));
    assert_eq!(sure_of(&m, "C3"), Some(("B3".into(), "phone".into())));
    assert_eq!(
        sure_of(&m, "C4"),
        Some(("B4".into(), "name+country".into()))
    );
    assert_eq!(verdict(&m, "C5"), &Verdict::None);
    assert_eq!(m.counts(), (4, 0, 1));
}

#[test]
fn namesakes_similar_names_and_contested_records_wait_for_a_person() {
    let books = vec![
        // Two customers of one name in one country: true namesakes.
        rec(
            "B1",
            &[
                ("name", "Juan Pérez"),
                ("country", "ES"),
                ("email", "juan@perez-obras.es"),
            ],
        ),
        rec(
            "B2",
            &[
                ("name", "Juan Perez"),
                ("country", "ES"),
                ("email", "jp@correo.es"),
            ],
        ),
        // One name, and an e-mail the source contradicts.
        rec(
            "B3",
            &[
                ("name", "Ana Silva"),
                ("country", "PT"),
                ("email", "ana@silva.pt"),
            ],
        ),
        // Only similar.
        rec("B4", &[("name", "Meridian Logistics"), ("country", "DE")]),
        // Two source records will be sure of this one.
        rec("B5", &[("name", "Orbit"), ("email", "team@orbit.io")]),
        // Two source records that are one party read twice (two deals of
        // one company) will be sure of this one.
        rec(
            "B6",
            &[("name", "Kestrel Foods"), ("email", "buy@kestrel.co")],
        ),
    ];
    let crm = vec![
        rec("C1", &[("name", "JUAN PEREZ"), ("country", "es")]),
        rec(
            "C2",
            &[
                ("name", "Ana Silva"),
                ("country", "PT"),
                ("email", "ana.silva@gmail.com"),
            ],
        ),
        rec("C3", &[("name", "Meridian Logistic"), ("country", "FR")]),
        rec("C4", &[("name", "Orbit Inc"), ("email", "TEAM@orbit.io")]),
        rec(
            "C5",
            &[
                ("name", "Orbit GmbH"),
                ("email", "team@orbit.io"),
                ("phone", "+49 30 1234567"),
            ],
        ),
        rec(
            "C6",
            &[("name", "Kestrel Foods"), ("email", "BUY@kestrel.co")],
        ),
        rec(
            "C7",
            &[("name", "KESTREL FOODS"), ("email", "buy@kestrel.co")],
        ),
    ];
    let m = match_records(&customer_keys(0.9), &crm, &books);
    let why = |id: &str| match verdict(&m, id) {
        Verdict::Uncertain { why, candidates } => (
            why.clone(),
            candidates.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
        ),
        other => panic!("{id}: {other:?}"),
    };
    assert_eq!(
        why("C1"),
        (
            "2 destination records share this name+country".into(),
            vec!["B1".into(), "B2".into()]
        )
    );
    assert_eq!(
        why("C2"),
        (
            "the name+country agrees but the email differs".into(),
            vec!["B3".into()]
        )
    );
    let (w, c) = why("C3");
    assert!(w.contains("similar name") && c == ["B4"], "{w} {c:?}");
    assert!(
        why("C4").0.contains("also the email match of another"),
        "{:?}",
        why("C4")
    );
    assert!(why("C5").0.contains("also the email match of another"));
    assert_eq!(sure_of(&m, "C6"), Some(("B6".into(), "email".into())));
    assert_eq!(sure_of(&m, "C7"), Some(("B6".into(), "email".into())));
    assert_eq!(m.counts(), (2, 5, 0));
}

#[test]
fn the_verdicts_do_not_depend_on_the_order_records_come_in() {
    let books: Vec<_> = (0..200)
        .map(|i| {
            rec(
                &format!("B{i:03}"),
                &[
                    ("name", &format!("Company {} GmbH", i / 2)),
                    ("email", &format!("c{i}@x.de")),
                ],
            )
        })
        .collect();
    let crm: Vec<_> = (0..200)
        .map(|i| {
            rec(
                &format!("C{i:03}"),
                &[
                    ("name", &format!("company {}", i / 3)),
                    ("email", &format!("C{}@X.DE", i * 7 % 200)),
                ],
            )
        })
        .collect();
    let keys = customer_keys(0.85);
    let a = match_records(&keys, &crm, &books);
    let mut crm_rev = crm.clone();
    crm_rev.reverse();
    let mut books_rev = books.clone();
    books_rev.reverse();
    let b = match_records(&keys, &crm_rev, &books_rev);
    assert_eq!(a, b);
    assert!(a.counts().0 > 0, "{:?}", a.counts());
}

#[test]
fn products_by_sku_then_name_and_invoices_by_number_then_customer_date_total() {
    let erp = vec![
        rec("P1", &[("sku", "AB-1001"), ("name", "Widget, blue")]),
        rec("P2", &[("name", "Gadget Pro")]),
    ];
    let shop = vec![
        rec("S1", &[("sku", "ab1001"), ("name", "Blue widget")]),
        rec("S2", &[("name", "GADGET PRO")]),
        rec("S3", &[("sku", "ZZ-9"), ("name", "Gizmo")]),
    ];
    let m = match_records(&product_keys(), &shop, &erp);
    assert_eq!(sure_of(&m, "S1"), Some(("P1".into(), "sku".into())));
    assert_eq!(sure_of(&m, "S2"), Some(("P2".into(), "name".into())));
    assert_eq!(verdict(&m, "S3"), &Verdict::None);

    let books = vec![
        rec(
            "I1",
            &[
                ("number", "INV-0042"),
                ("customer", "Acme GmbH"),
                ("date", "2026-11-02"),
                ("total", "1190.00"),
            ],
        ),
        rec(
            "I2",
            &[
                ("customer", "Bright Ltd"),
                ("date", "2026-11-05"),
                ("total", "250"),
            ],
        ),
    ];
    let crm = vec![
        rec(
            "D1",
            &[
                ("number", "inv 0042"),
                ("customer", "ACME"),
                ("date", "2026-11-02"),
                ("total", "1190"),
            ],
        ),
        rec(
            "D2",
            &[
                ("customer", "bright"),
                ("date", "2026-11-05T09:30:00Z"),
                ("total", "250.00"),
            ],
        ),
        rec(
            "D3",
            &[
                ("customer", "bright"),
                ("date", "2026-11-06"),
                ("total", "250.00"),
            ],
        ),
    ];
    let m = match_records(&invoice_keys(), &crm, &books);
    assert_eq!(sure_of(&m, "D1"), Some(("I1".into(), "number".into())));
    assert_eq!(
        sure_of(&m, "D2"),
        Some(("I2".into(), "customer+date+total".into()))
    );
    assert_eq!(
        verdict(&m, "D3"),
        &Verdict::None,
        "another day is another invoice"
    );
}
