//! Going live on systems that already hold data: the people a CRM holds,
//! and the customers the books (or the ERP) already have — the same people
//! typed in again by someone else, in other spellings and formats, beside
//! true namesakes and people only one side knows. Shared by the going-live
//! tests of each destination.

use std::collections::BTreeMap;

use nexo_sandbox::hubspot::{self, HubSpotConfig, HubSpotSandbox, ObjectType, SeedData};
use nexo_sandbox::xero::{self, Collection, XeroConfig, XeroSandbox};
use serde_json::json;

use crate::tryton::Host;

/// What matching must make of a CRM person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Linked to the existing customer with this name.
    Linked(&'static str),
    /// Queued for review with these existing customers as candidates.
    Queued(&'static [&'static str]),
    /// Nothing like it: created.
    Created,
}

/// A person in the CRM.
#[derive(Debug, Clone, Copy)]
pub struct Person {
    /// First name.
    pub first: &'static str,
    /// Last name.
    pub last: &'static str,
    /// E-mail, if any.
    pub email: Option<&'static str>,
    /// Phone, if any.
    pub phone: Option<&'static str>,
    /// ISO country.
    pub country: &'static str,
    /// What matching must make of them.
    pub expect: Expect,
}

/// A customer the destination holds before Nexo is connected.
#[derive(Debug, Clone, Copy)]
pub struct Existing {
    /// Name as typed there.
    pub name: &'static str,
    /// E-mail, if any.
    pub email: Option<&'static str>,
    /// Phone, if any.
    pub phone: Option<&'static str>,
    /// ISO country.
    pub country: &'static str,
}

/// The CRM's people.
pub const CRM: &[Person] = &[
    // The e-mail in another case.
    Person {
        first: "Ada",
        last: "Lovelace",
        email: Some("ada@analytical.co.uk"),
        phone: Some("+44 20 7946 0018"),
        country: "GB",
        expect: Expect::Linked("Ada Lovelace"),
    },
    // The phone in another format, the name spaced differently.
    Person {
        first: "Bruno",
        last: "Costa",
        email: Some("bruno.costa@porto-tech.pt"),
        phone: Some("+351 912 345 678"),
        country: "PT",
        expect: Expect::Linked("Bruno  Costa"),
    },
    // The name without its accent, in the same country.
    Person {
        first: "Chloé",
        last: "Martin",
        email: Some("chloe@martin-conseil.fr"),
        phone: None,
        country: "FR",
        expect: Expect::Linked("Chloe Martin"),
    },
    // Two customers of this name in this country (one under a legal
    // form): which one is a person's call.
    Person {
        first: "Dmitri",
        last: "Ivanov",
        email: Some("dmitri@ivanov.dev"),
        phone: None,
        country: "DE",
        expect: Expect::Queued(&["Dmitri Ivanov GmbH", "DMITRI IVANOV"]),
    },
    // A true namesake: same name and country, another e-mail.
    Person {
        first: "Elif",
        last: "Yilmaz",
        email: Some("elif@yilmaz.io"),
        phone: None,
        country: "TR",
        expect: Expect::Queued(&["ELIF YILMAZ"]),
    },
    // Only a similar name.
    Person {
        first: "Farah",
        last: "Haddad",
        email: None,
        phone: None,
        country: "LB",
        expect: Expect::Queued(&["Farrah Hadad"]),
    },
    // Only in the CRM.
    Person {
        first: "Goran",
        last: "Novak",
        email: Some("goran@novak.hr"),
        phone: Some("+385 1 4567 890"),
        country: "HR",
        expect: Expect::Created,
    },
    Person {
        first: "Hana",
        last: "Sato",
        email: Some("hana@sato.jp"),
        phone: None,
        country: "JP",
        expect: Expect::Created,
    },
];

/// The customers the destination already holds.
pub const EXISTING: &[Existing] = &[
    Existing {
        name: "Ada Lovelace",
        email: Some("ADA@Analytical.co.uk"),
        phone: None,
        country: "GB",
    },
    Existing {
        name: "Bruno  Costa",
        email: None,
        phone: Some("912 345 678"),
        country: "PT",
    },
    Existing {
        name: "Chloe Martin",
        email: None,
        phone: None,
        country: "FR",
    },
    Existing {
        name: "Dmitri Ivanov GmbH",
        email: Some("d.ivanov@bau.de"),
        phone: None,
        country: "DE",
    },
    Existing {
        name: "DMITRI IVANOV",
        email: None,
        phone: None,
        country: "DE",
    },
    Existing {
        name: "ELIF YILMAZ",
        email: Some("elif.y@kadikoy-tekstil.com.tr"),
        phone: None,
        country: "TR",
    },
    Existing {
        name: "Farrah Hadad",
        email: None,
        phone: None,
        country: "LB",
    },
    // Only in the destination: never touched.
    Existing {
        name: "Zeta Trading Ltd",
        email: Some("accounts@zeta.example"),
        phone: None,
        country: "GB",
    },
];

/// Puts the CRM's people into the HubSpot-like sandbox; their ids in
/// [`CRM`]'s order.
pub fn seed_crm(hub: &HubSpotSandbox) -> Vec<String> {
    CRM.iter()
        .map(|p| {
            let mut props = vec![
                ("firstname", p.first),
                ("lastname", p.last),
                ("country", p.country),
            ];
            if let Some(e) = p.email {
                props.push(("email", e));
            }
            if let Some(ph) = p.phone {
                props.push(("phone", ph));
            }
            hub.create(ObjectType::Contacts, &props)
                .expect("a valid CRM contact")
                .id
                .to_string()
        })
        .collect()
}

/// The field-mapper's rules that make a HubSpot contact a canonical
/// customer (`Company`): its name, e-mail, phone and country.
///
/// The CRM's id becomes the customer's external reference, so the books
/// carry it (Xero's `ContactNumber` `hubspot:ID`).
pub const MAPPER_CONFIG: &str = r#"{ rename = { country = "address.country" }, defaults = { roles = ["customer"], external_refs = [{ system = "hubspot", id = "" }] }, templates = { name = "{firstname} {lastname}", "external_refs.0.id" = "{id}" }, keep = ["name", "email", "phone", "address", "roles", "external_refs"] }"#;

/// A pipeline from the CRM's contacts to `destination` (connection,
/// stream) that matches before its first run.
pub fn pipeline(name: &str, destination: (&str, &str)) -> String {
    format!(
        "name = \"{name}\"\nentity = \"customer\"\nmodel = \"company\"\n\
         [source]\nconnection = \"hubspot\"\nstream = \"contacts\"\n\
         [[mappers]]\nplugin = \"nexo/field-mapper\"\nconfig = {MAPPER_CONFIG}\n\
         [destination]\nconnection = \"{}\"\nstream = \"{}\"\n\
         [match]\n\
         [retry]\ninitial_backoff_ms = 20\nmax_backoff_ms = 200\n",
        destination.0, destination.1
    )
}

/// The person of a CRM id.
pub fn person(ids: &[String], id: &str) -> Person {
    let i = ids.iter().position(|x| x == id).expect("a CRM id");
    CRM[i]
}

/// Puts the customers the books already hold into the Xero-like sandbox;
/// their ContactIDs by name.
pub fn seed_books(books: &XeroSandbox) -> BTreeMap<&'static str, String> {
    EXISTING
        .iter()
        .map(|e| {
            let mut doc = json!({"Name": e.name, "IsCustomer": true,
                "Addresses": [{"AddressType": "STREET", "Country": e.country}]});
            if let Some(m) = e.email {
                doc["EmailAddress"] = json!(m);
            }
            if let Some(p) = e.phone {
                doc["Phones"] = json!([{"PhoneType": "DEFAULT", "PhoneNumber": p}]);
            }
            let c = books.create(Collection::Contacts, doc).unwrap();
            (e.name, c["ContactID"].as_str().unwrap().to_string())
        })
        .collect()
}

/// The two systems of going live, seeded and connected to a host: the CRM
/// (connection `hubspot`) and the books (connection `xero`), each reached
/// through an origin override, with pipeline `customers` between them.
#[allow(missing_debug_implementations)]
pub struct Systems {
    /// The HubSpot-like CRM.
    pub hub: HubSpotSandbox,
    /// The Xero-like books.
    pub books: XeroSandbox,
    /// The CRM's ids, in [`CRM`]'s order.
    pub crm_ids: Vec<String>,
    /// The books' ContactIDs of [`EXISTING`], by name.
    pub existing: BTreeMap<&'static str, String>,
}

impl Systems {
    /// Starts and seeds both sandboxes, adds their connections to `host`
    /// and applies pipeline `customers`.
    pub async fn connect(host: &Host) -> Systems {
        const HUBSPOT_TOKEN: &str = "pat-na1-going-live-fixture";
        const XERO_TOKEN: &str = "xero-going-live-fixture";
        const TENANT: &str = "7a0c1f2e-0000-4000-8000-0000000000ce";
        let hub = hubspot::start(HubSpotConfig {
            token: HUBSPOT_TOKEN.into(),
            seed: SeedData::EMPTY,
            ..HubSpotConfig::default()
        })
        .await
        .unwrap();
        let books = xero::start(XeroConfig {
            token: XERO_TOKEN.into(),
            tenant_id: TENANT.into(),
            rate_limit: None,
            ..XeroConfig::default()
        })
        .await
        .unwrap();
        let crm_ids = seed_crm(&hub);
        let existing = seed_books(&books);
        host.connect_overridden(
            "hubspot",
            "nexo/hubspot",
            ("https://api.hubapi.com", &hub.url()),
            json!({"page_size": 3}),
            ("api_token", HUBSPOT_TOKEN),
        );
        host.connect_overridden(
            "xero",
            "nexo/xero",
            ("https://api.xero.com", &books.url()),
            json!({"tenant_id": TENANT, "contact_source": "hubspot"}),
            ("access_token", XERO_TOKEN),
        );
        host.apply(&pipeline("customers", ("xero", "contacts")))
            .await;
        Systems {
            hub,
            books,
            crm_ids,
            existing,
        }
    }

    /// The CRM id of the person with this first name.
    pub fn crm_id(&self, first_name: &str) -> &str {
        let i = CRM
            .iter()
            .position(|p| p.first == first_name)
            .expect("a CRM person");
        &self.crm_ids[i]
    }
}
