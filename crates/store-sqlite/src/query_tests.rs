//! End-to-end SOQL tests: real queries resolved against the store's schema and executed by the
//! SQLite backend, plus `EXPLAIN QUERY PLAN` checks that selective filters use indexes.

use std::collections::HashMap;
use std::sync::Arc;

use model::spec::{CustomFieldSpec, CustomObjectSpec, ValueSet, ValueSetDefinition, ValueSpec};
use model::{Id, ObjectDef, OrgMarker, Value};
use store::soql::plan::{Plan, PlanKind};
use store::soql::{FullAccess, ResolveOptions};
use store::{Cell, QueryRow, Store};

use crate::{Options, SqliteStore};

// ------------------------------------------------------------------------------- fixture

/// Sequences of the rows the fixture creates, by a short name.
type Seqs = HashMap<&'static str, u64>;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    seqs: Seqs,
}

impl Fixture {
    fn st(&self) -> &dyn Store {
        &*self.store
    }

    fn marker(&self) -> OrgMarker {
        self.st().marker()
    }

    fn obj(&self, name: &str) -> Arc<ObjectDef> {
        self.st().schema().object(name).unwrap().clone()
    }

    /// The 18-char id of fixture row `key` of object `object`.
    fn id(&self, object: &str, key: &str) -> String {
        Id::new(self.obj(object).key_prefix, self.marker(), self.seqs[key]).to_18()
    }

    fn seq(&self, key: &str) -> u64 {
        self.seqs[key]
    }

    fn plan_with(&self, q: &str, o: &ResolveOptions) -> Plan {
        match store::soql::compile(q, &self.st().schema(), &FullAccess, o) {
            Ok(p) => p,
            Err(e) => panic!("{q}: {e}"),
        }
    }

    fn plan(&self, q: &str) -> Plan {
        self.plan_with(q, &opts())
    }

    fn ids(&self, q: &str) -> Vec<u64> {
        let p = self.plan(q);
        self.st().read(|tx| tx.query_ids(&p)).unwrap()
    }

    fn rows_with(&self, q: &str, o: &ResolveOptions) -> Vec<QueryRow> {
        let p = self.plan_with(q, o);
        self.st()
            .read(|tx| {
                let ids = tx.query_ids(&p)?;
                tx.query_rows(&p, &ids)
            })
            .unwrap()
    }

    fn rows(&self, q: &str) -> Vec<QueryRow> {
        self.rows_with(q, &opts())
    }

    /// The fixture keys of the rows a records query returns, in order.
    fn keys(&self, q: &str) -> Vec<&'static str> {
        let p = self.plan(q);
        let by_seq: HashMap<u64, &'static str> = self
            .seqs
            .iter()
            .filter(|(k, _)| k.starts_with(prefix_of(&p.object.name)))
            .map(|(k, v)| (*v, *k))
            .collect();
        self.ids(q).iter().map(|s| by_seq[s]).collect()
    }

    fn count(&self, q: &str) -> u64 {
        let p = self.plan(q);
        assert_eq!(p.kind, PlanKind::Count);
        self.st().read(|tx| tx.query_count(&p)).unwrap()
    }

    fn aggregate(&self, q: &str) -> Vec<Vec<Value>> {
        let p = self.plan(q);
        let rows = self.st().read(|tx| tx.query_aggregate(&p)).unwrap();
        rows.into_iter()
            .map(|r| {
                assert_eq!(r.seq, 0);
                r.cells
                    .into_iter()
                    .map(|c| match c {
                        Cell::Value(v) => v,
                        other => panic!("{other:?}"),
                    })
                    .collect()
            })
            .collect()
    }
}

/// Fixture keys start with a letter per object.
fn prefix_of(object: &str) -> &'static str {
    match object {
        "Account" => "a",
        "Contact" => "c",
        "Opportunity" => "o",
        "User" => "u",
        "Invoice__c" => "i",
        "Product2" => "p",
        _ => "?",
    }
}

/// Wednesday 2024-05-15.
fn opts() -> ResolveOptions {
    ResolveOptions {
        today: (2024, 5, 15),
        now_ms: dt("2024-05-15T12:00:00Z"),
        include_deleted: false,
    }
}

fn query_all() -> ResolveOptions {
    ResolveOptions {
        include_deleted: true,
        ..opts()
    }
}

fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

fn date(s: &str) -> Value {
    Value::Date(model::value::parse_date(s).unwrap())
}

fn dt(s: &str) -> i64 {
    model::value::parse_datetime(s).unwrap()
}

fn vals(o: &ObjectDef, pairs: Vec<(&str, Value)>) -> Vec<(usize, Value)> {
    pairs
        .into_iter()
        .map(|(n, v)| (o.field_index(n).unwrap_or_else(|| panic!("{n}")), v))
        .collect()
}

fn idv(o: &ObjectDef, marker: OrgMarker, seq: u64) -> Value {
    Value::Id(Id::new(o.key_prefix, marker, seq))
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(
        &dir.path().join("org.db"),
        Options {
            readers: 2,
            durable: false,
        },
    )
    .unwrap();
    let st: &dyn Store = &*store;

    // a custom object with a multi-select picklist, a unique external id and a lookup
    let spec = CustomObjectSpec {
        full_name: "Invoice__c".into(),
        label: Some("Invoice".into()),
        ..Default::default()
    };
    let def = spec.to_object(st.schema().next_custom_prefix()).unwrap();
    let json = serde_json::to_string(&spec).unwrap();
    st.write(move |tx| Ok(tx.create_object(&def, &json)?))
        .await
        .unwrap();
    let values = ["Red", "Green", "Blue"]
        .iter()
        .map(|v| ValueSpec {
            full_name: Some(v.to_string()),
            label: Some(format!("{v} label")),
            ..Default::default()
        })
        .collect();
    let fields = vec![
        (
            "Tags__c",
            CustomFieldSpec {
                ty: Some("MultiselectPicklist".into()),
                value_set: Some(ValueSet {
                    restricted: None,
                    value_set_definition: Some(ValueSetDefinition {
                        value: values,
                        sorted: None,
                    }),
                }),
                ..Default::default()
            },
        ),
        (
            "Code__c",
            CustomFieldSpec {
                ty: Some("Text".into()),
                length: Some(20),
                external_id: Some(true),
                unique: Some(true),
                ..Default::default()
            },
        ),
        (
            "Account__c",
            CustomFieldSpec {
                ty: Some("Lookup".into()),
                reference_to: Some("Account".into()),
                relationship_name: Some("Invoices".into()),
                ..Default::default()
            },
        ),
        (
            "Total__c",
            CustomFieldSpec {
                ty: Some("Number".into()),
                precision: Some(18),
                scale: Some(2),
                ..Default::default()
            },
        ),
    ];
    for (name, fspec) in fields {
        let f = fspec.to_field(name).unwrap();
        let json = serde_json::to_string(&fspec).unwrap();
        st.write(move |tx| Ok(tx.add_field("Invoice__c", &f, &json)?))
            .await
            .unwrap();
    }

    let schema = st.schema();
    let marker = st.marker();
    let seqs = st
        .write(move |tx| {
            let o = |n: &str| schema.object(n).unwrap().clone();
            let (profile, user, account, contact, opp, inv, product) = (
                o("Profile"),
                o("User"),
                o("Account"),
                o("Contact"),
                o("Opportunity"),
                o("Invoice__c"),
                o("Product2"),
            );
            let mut s: Seqs = HashMap::new();
            let p1 = tx.insert(&profile, &vals(&profile, vec![("Name", text("Admin"))]))?;
            let u_boss = tx.insert(
                &user,
                &vals(
                    &user,
                    vec![
                        ("Username", text("boss@example.com")),
                        ("LastName", text("Boss")),
                        ("Email", text("boss@example.com")),
                        ("ProfileId", idv(&profile, marker, p1)),
                    ],
                ),
            )?;
            let u_two = tx.insert(
                &user,
                &vals(
                    &user,
                    vec![
                        ("Username", text("two@example.com")),
                        ("LastName", text("Two")),
                        ("Email", text("two@example.com")),
                        ("ProfileId", idv(&profile, marker, p1)),
                        ("ManagerId", idv(&user, marker, u_boss)),
                    ],
                ),
            )?;
            s.insert("u_boss", u_boss);
            s.insert("u_two", u_two);

            let acc = |tx: &mut dyn store::WriteTx, pairs: Vec<(&str, Value)>| {
                tx.insert(&account, &vals(&account, pairs))
            };
            s.insert(
                "a_acme",
                acc(
                    tx,
                    vec![
                        ("Name", text("Acme")),
                        ("Industry", text("Banking")),
                        ("AnnualRevenue", Value::Double(1000.0)),
                        ("NumberOfEmployees", Value::Int(10)),
                        ("OwnerId", idv(&user, marker, u_two)),
                        ("CreatedDate", Value::DateTime(dt("2024-05-15T10:00:00Z"))),
                    ],
                )?,
            );
            s.insert(
                "a_globex",
                acc(
                    tx,
                    vec![
                        ("Name", text("Globex")),
                        ("Industry", text("Energy")),
                        ("AnnualRevenue", Value::Double(5000.0)),
                        ("NumberOfEmployees", Value::Int(50)),
                        ("OwnerId", idv(&user, marker, u_boss)),
                        ("CreatedDate", Value::DateTime(dt("2024-05-13T23:30:00Z"))),
                    ],
                )?,
            );
            s.insert(
                "a_initech",
                acc(
                    tx,
                    vec![
                        ("Name", text("Initech")),
                        ("CreatedDate", Value::DateTime(dt("2024-04-01T08:00:00Z"))),
                    ],
                )?,
            );
            s.insert(
                "a_pct",
                acc(
                    tx,
                    vec![
                        ("Name", text("100% Real_Corp")),
                        ("Industry", text("Energy")),
                        ("AnnualRevenue", Value::Double(10.0)),
                        ("OwnerId", idv(&user, marker, u_two)),
                    ],
                )?,
            );
            s.insert(
                "a_lookalike",
                acc(tx, vec![("Name", text("100X RealXCorp"))])?,
            );
            s.insert("a_inject", acc(tx, vec![("Name", text("' OR 1=1 --"))])?);
            s.insert(
                "a_drop",
                acc(tx, vec![("Name", text("\"; DROP TABLE sobj_Account; --"))])?,
            );

            let con = |tx: &mut dyn store::WriteTx, pairs: Vec<(&str, Value)>| {
                tx.insert(&contact, &vals(&contact, pairs))
            };
            let a = |k: &str| idv(&account, marker, s[k]);
            let (acme, globex, initech) = (a("a_acme"), a("a_globex"), a("a_initech"));
            s.insert(
                "c_smith",
                con(
                    tx,
                    vec![
                        ("LastName", text("Smith")),
                        ("FirstName", text("Ann")),
                        ("AccountId", acme.clone()),
                        ("Email", text("ann@acme.com")),
                        ("Birthdate", date("1990-01-15")),
                    ],
                )?,
            );
            s.insert(
                "c_jones",
                con(
                    tx,
                    vec![
                        ("LastName", text("Jones")),
                        ("AccountId", acme.clone()),
                        ("Birthdate", date("1985-06-01")),
                    ],
                )?,
            );
            s.insert(
                "c_brown",
                con(
                    tx,
                    vec![
                        ("LastName", text("Brown")),
                        ("FirstName", text("Bob")),
                        ("AccountId", acme.clone()),
                    ],
                )?,
            );
            s.insert(
                "c_black",
                con(
                    tx,
                    vec![("LastName", text("Black")), ("AccountId", globex.clone())],
                )?,
            );
            s.insert("c_orphan", con(tx, vec![("LastName", text("Orphan"))])?);
            s.insert(
                "c_white",
                con(
                    tx,
                    vec![("LastName", text("White")), ("AccountId", initech.clone())],
                )?,
            );
            // soft-deleted contact of Acme
            let gone = con(
                tx,
                vec![
                    ("LastName", text("Gone")),
                    ("AccountId", acme.clone()),
                    ("IsDeleted", Value::Bool(true)),
                ],
            )?;
            s.insert("c_gone", gone);

            let op = |tx: &mut dyn store::WriteTx, pairs: Vec<(&str, Value)>| {
                tx.insert(&opp, &vals(&opp, pairs))
            };
            for (k, name, accv, amount, stage, close) in [
                (
                    "o_big",
                    "Big",
                    acme.clone(),
                    Value::Double(100.0),
                    "Prospecting",
                    "2024-05-15",
                ),
                (
                    "o_small",
                    "Small",
                    acme.clone(),
                    Value::Double(50.0),
                    "Closed Won",
                    "2024-05-10",
                ),
                (
                    "o_mid",
                    "Mid",
                    globex.clone(),
                    Value::Double(75.0),
                    "Prospecting",
                    "2024-04-30",
                ),
                (
                    "o_none",
                    "None",
                    globex.clone(),
                    Value::Null,
                    "Closed Lost",
                    "2024-06-01",
                ),
            ] {
                s.insert(
                    k,
                    op(
                        tx,
                        vec![
                            ("Name", text(name)),
                            ("AccountId", accv),
                            ("Amount", amount),
                            ("StageName", text(stage)),
                            ("CloseDate", date(close)),
                        ],
                    )?,
                );
            }

            let invoice = |tx: &mut dyn store::WriteTx, pairs: Vec<(&str, Value)>| {
                tx.insert(&inv, &vals(&inv, pairs))
            };
            s.insert(
                "i_1",
                invoice(
                    tx,
                    vec![
                        ("Name", text("INV 1")),
                        ("Tags__c", text("Red;Green")),
                        ("Code__c", text("INV-1")),
                        ("Account__c", acme.clone()),
                        ("Total__c", Value::Double(10.5)),
                    ],
                )?,
            );
            s.insert(
                "i_2",
                invoice(
                    tx,
                    vec![
                        ("Name", text("INV 2")),
                        ("Tags__c", text("Blue")),
                        ("Code__c", text("INV-2")),
                    ],
                )?,
            );
            s.insert("i_3", invoice(tx, vec![("Name", text("INV 3"))])?);
            s.insert(
                "p_widget",
                tx.insert(
                    &product,
                    &vals(
                        &product,
                        vec![("Name", text("Widget")), ("ExternalId", text("W-1"))],
                    ),
                )?,
            );
            Ok(s)
        })
        .await
        .unwrap();
    Fixture {
        _dir: dir,
        store,
        seqs,
    }
}

fn cell_text(c: &Cell) -> String {
    match c {
        Cell::Value(Value::Text(s)) => s.clone(),
        Cell::Value(Value::Null) => "<null>".into(),
        other => panic!("{other:?}"),
    }
}

// ------------------------------------------------------------------------------- filters

#[tokio::test]
async fn comparison_operators_on_every_type() {
    let f = fixture().await;
    // text: case-insensitive equality, ordering comparisons
    assert_eq!(
        f.keys("SELECT Id FROM Account WHERE Name = 'ACME'"),
        vec!["a_acme"]
    );
    assert_eq!(
        f.keys("SELECT Id FROM Account WHERE Name > 'g' AND Name < 'J'"),
        vec!["a_globex", "a_initech"]
    );
    // numbers (double and int)
    assert_eq!(
        f.keys("SELECT Id FROM Account WHERE AnnualRevenue >= 1000"),
        vec!["a_acme", "a_globex"]
    );
    assert_eq!(
        f.keys("SELECT Id FROM Account WHERE AnnualRevenue < 1000.5 AND AnnualRevenue > 10"),
        vec!["a_acme"]
    );
    assert_eq!(
        f.keys("SELECT Id FROM Account WHERE AnnualRevenue <= 10"),
        vec!["a_pct"]
    );
    assert_eq!(
        f.keys("SELECT Id FROM Account WHERE NumberOfEmployees = 50"),
        vec!["a_globex"]
    );
    // != also matches nulls (SOQL semantics)
    assert_eq!(
        f.keys("SELECT Id FROM Account WHERE Industry != 'Banking'"),
        vec![
            "a_globex",
            "a_initech",
            "a_pct",
            "a_lookalike",
            "a_inject",
            "a_drop"
        ]
    );
    // `!=` is case-insensitive like `=`
    assert_eq!(
        f.keys("SELECT Id FROM Account WHERE Industry != 'BANKING' AND Industry != 'energy'"),
        vec!["a_initech", "a_lookalike", "a_inject", "a_drop"]
    );
    // null comparisons
    assert_eq!(
        f.keys("SELECT Id FROM Account WHERE Industry = null AND AnnualRevenue = null"),
        vec!["a_initech", "a_lookalike", "a_inject", "a_drop"]
    );
    assert_eq!(
        f.keys("SELECT Id FROM Account WHERE AnnualRevenue != null"),
        vec!["a_acme", "a_globex", "a_pct"]
    );
    // booleans
    assert_eq!(
        f.ids("SELECT Id FROM Contact WHERE IsDeleted = true").len(),
        0
    );
    assert_eq!(
        f.ids("SELECT Id FROM Contact WHERE IsDeleted = false")
            .len(),
        6
    );
    // dates and date-times
    assert_eq!(
        f.keys("SELECT Id FROM Contact WHERE Birthdate < 1989-01-01"),
        vec!["c_jones"]
    );
    assert_eq!(
        f.keys("SELECT Id FROM Contact WHERE Birthdate >= 1985-06-01 ORDER BY Birthdate"),
        vec!["c_jones", "c_smith"]
    );
    assert_eq!(
        f.keys("SELECT Id FROM Account WHERE CreatedDate > 2024-05-14T00:00:00Z"),
        vec!["a_acme"]
    );
    assert_eq!(
        f.keys("SELECT Id FROM Account WHERE CreatedDate >= 2024-05-14T01:30:00+02:00"),
        vec!["a_acme", "a_globex"]
    );
    // ids and references, 15 and 18 chars
    let acme = f.id("Account", "a_acme");
    assert_eq!(
        f.keys(&format!("SELECT Id FROM Account WHERE Id = '{acme}'")),
        vec!["a_acme"]
    );
    assert_eq!(
        f.keys(&format!(
            "SELECT Id FROM Contact WHERE AccountId = '{}'",
            &acme[..15]
        )),
        vec!["c_smith", "c_jones", "c_brown"]
    );
    assert_eq!(
        f.keys(&format!(
            "SELECT Id FROM Contact WHERE AccountId != '{acme}'"
        )),
        vec!["c_black", "c_orphan", "c_white"]
    );
    // NOT
    assert_eq!(
        f.keys("SELECT Id FROM Account WHERE NOT (AnnualRevenue > 100)"),
        vec!["a_initech", "a_pct", "a_lookalike", "a_inject", "a_drop"]
    );
    assert_eq!(
        f.keys("SELECT Id FROM Account WHERE (Industry = 'Energy' OR Name = 'acme') AND NOT Name LIKE '100%'"),
        vec!["a_acme", "a_globex"]
    );
}

#[tokio::test]
async fn ids_of_other_orgs_and_objects_match_nothing() {
    let f = fixture().await;
    let acme_seq = f.seq("a_acme");
    let other_org = Id::new(f.obj("Account").key_prefix, OrgMarker(*b"Zz9"), acme_seq).to_18();
    let contact_id = f.id("Contact", "c_smith");
    assert!(f
        .ids(&format!("SELECT Id FROM Account WHERE Id = '{other_org}'"))
        .is_empty());
    assert!(f
        .ids(&format!("SELECT Id FROM Account WHERE Id = '{contact_id}'"))
        .is_empty());
    assert!(f
        .ids(&format!(
            "SELECT Id FROM Account WHERE Id IN ('{other_org}', '{contact_id}')"
        ))
        .is_empty());
    assert_eq!(
        f.ids(&format!("SELECT Id FROM Account WHERE Id != '{other_org}'"))
            .len(),
        7
    );
    assert_eq!(
        f.ids(&format!(
            "SELECT Id FROM Account WHERE Id NOT IN ('{contact_id}')"
        ))
        .len(),
        7
    );
    // id ranges within the org
    let globex = f.id("Account", "a_globex");
    assert_eq!(
        f.keys(&format!(
            "SELECT Id FROM Account WHERE Id > '{globex}' AND Id < '{}'",
            f.id("Account", "a_lookalike")
        )),
        vec!["a_initech", "a_pct"]
    );
}

#[tokio::test]
async fn like_patterns_and_escapes() {
    let f = fixture().await;
    assert_eq!(
        f.keys("SELECT Id FROM Account WHERE Name LIKE 'ac%'"),
        vec!["a_acme"]
    );
    assert_eq!(
        f.keys("SELECT Id FROM Account WHERE Name LIKE '%BEX'"),
        vec!["a_globex"]
    );
    assert_eq!(
        f.keys("SELECT Id FROM Account WHERE Name LIKE '_cme'"),
        vec!["a_acme"]
    );
    assert_eq!(
        f.keys("SELECT Id FROM Account WHERE Name LIKE 'acm'"),
        Vec::<&str>::new()
    );
    // bare % and _ are wildcards
    assert_eq!(
        f.keys("SELECT Id FROM Account WHERE Name LIKE '100_ Real_Corp'"),
        vec!["a_pct", "a_lookalike"]
    );
    // escaped ones are literal
    assert_eq!(
        f.keys(r"SELECT Id FROM Account WHERE Name LIKE '100\% Real\_Corp'"),
        vec!["a_pct"]
    );
    // (`sobj_Account` in the injection-shaped name has an underscore too)
    assert_eq!(
        f.keys(r"SELECT Id FROM Account WHERE Name LIKE '%\_%'"),
        vec!["a_pct", "a_drop"]
    );
    // quotes and SQL-ish text inside patterns are literal
    assert_eq!(
        f.keys(r"SELECT Id FROM Account WHERE Name LIKE '\' OR%'"),
        vec!["a_inject"]
    );
    assert_eq!(
        f.keys("SELECT Id FROM Contact WHERE NOT Email LIKE '%@acme.com'"),
        vec!["c_jones", "c_brown", "c_black", "c_orphan", "c_white"]
    );
}

#[tokio::test]
async fn in_and_not_in() {
    let f = fixture().await;
    assert_eq!(
        f.keys("SELECT Id FROM Account WHERE Industry IN ('banking', 'Energy')"),
        vec!["a_acme", "a_globex", "a_pct"]
    );
    // NOT IN also returns rows without a value
    assert_eq!(
        f.keys("SELECT Id FROM Account WHERE Industry NOT IN ('Energy')"),
        vec!["a_acme", "a_initech", "a_lookalike", "a_inject", "a_drop"]
    );
    // a null in the list
    assert_eq!(
        f.keys("SELECT Id FROM Account WHERE Industry IN ('Banking', null)"),
        vec!["a_acme", "a_initech", "a_lookalike", "a_inject", "a_drop"]
    );
    assert_eq!(
        f.keys("SELECT Id FROM Account WHERE Industry NOT IN ('Banking', null)"),
        vec!["a_globex", "a_pct"]
    );
    assert_eq!(
        f.keys("SELECT Id FROM Account WHERE NumberOfEmployees IN (10, 50, 99)"),
        vec!["a_acme", "a_globex"]
    );
    let ids = format!(
        "'{}', '{}'",
        f.id("Contact", "c_black"),
        f.id("Contact", "c_white")
    );
    assert_eq!(
        f.keys(&format!("SELECT Id FROM Contact WHERE Id IN ({ids})")),
        vec!["c_black", "c_white"]
    );
}

#[tokio::test]
async fn includes_and_excludes() {
    let f = fixture().await;
    assert_eq!(
        f.keys("SELECT Id FROM Invoice__c WHERE Tags__c INCLUDES ('red')"),
        vec!["i_1"]
    );
    assert_eq!(
        f.keys("SELECT Id FROM Invoice__c WHERE Tags__c INCLUDES ('Red;Blue', 'Blue')"),
        vec!["i_2"]
    );
    assert_eq!(
        f.keys("SELECT Id FROM Invoice__c WHERE Tags__c INCLUDES ('Green ; Red')"),
        vec!["i_1"]
    );
    // `Re` is not `Red`
    assert!(f
        .keys("SELECT Id FROM Invoice__c WHERE Tags__c INCLUDES ('Re')")
        .is_empty());
    assert_eq!(
        f.keys("SELECT Id FROM Invoice__c WHERE Tags__c EXCLUDES ('Green')"),
        vec!["i_2", "i_3"]
    );
    assert_eq!(
        f.keys("SELECT Id FROM Invoice__c WHERE Tags__c = 'red;green'"),
        vec!["i_1"]
    );
}

#[tokio::test]
async fn semi_and_anti_joins() {
    let f = fixture().await;
    assert_eq!(
        f.keys("SELECT Id FROM Account WHERE Id IN (SELECT AccountId FROM Contact WHERE LastName LIKE 'B%')"),
        vec!["a_acme", "a_globex"]
    );
    // anti-join: no (live) contacts; the null AccountId of the orphan does not spoil NOT IN
    assert_eq!(
        f.keys("SELECT Id FROM Account WHERE Id NOT IN (SELECT AccountId FROM Contact)"),
        vec!["a_pct", "a_lookalike", "a_inject", "a_drop"]
    );
    // the deleted contact is ignored unless queryAll
    assert_eq!(
        f.keys("SELECT Id FROM Account WHERE Id IN (SELECT AccountId FROM Contact WHERE LastName = 'Gone')"),
        Vec::<&str>::new()
    );
    // reference on the left, parent path inside the subquery
    assert_eq!(
        f.keys("SELECT Id FROM Opportunity WHERE AccountId IN (SELECT Id FROM Account WHERE Owner.LastName = 'Boss')"),
        vec!["o_mid", "o_none"]
    );
    assert_eq!(
        f.keys("SELECT Id FROM Contact WHERE AccountId NOT IN (SELECT Account__c FROM Invoice__c)"),
        vec!["c_black", "c_orphan", "c_white"]
    );
    // ORDER BY / LIMIT inside the subquery (a picklist sort key binds parameters)
    assert_eq!(
        f.keys("SELECT Id FROM Account WHERE Id IN (SELECT AccountId FROM Opportunity ORDER BY StageName DESC LIMIT 1)"),
        vec!["a_globex"]
    );
    assert_eq!(
        f.keys("SELECT Id FROM Account WHERE Id IN (SELECT AccountId FROM Opportunity ORDER BY StageName)"),
        vec!["a_acme", "a_globex"]
    );
}

#[tokio::test]
async fn date_literals_on_dates_and_date_times() {
    let f = fixture().await;
    assert_eq!(
        f.keys("SELECT Id FROM Opportunity WHERE CloseDate = TODAY"),
        vec!["o_big"]
    );
    assert_eq!(
        f.keys("SELECT Id FROM Opportunity WHERE CloseDate = THIS_MONTH"),
        vec!["o_big", "o_small"]
    );
    assert_eq!(
        f.keys("SELECT Id FROM Opportunity WHERE CloseDate != THIS_MONTH"),
        vec!["o_mid", "o_none"]
    );
    assert_eq!(
        f.keys("SELECT Id FROM Opportunity WHERE CloseDate = LAST_N_DAYS:5"),
        vec!["o_big", "o_small"]
    );
    assert_eq!(
        f.keys("SELECT Id FROM Opportunity WHERE CloseDate < THIS_MONTH"),
        vec!["o_mid"]
    );
    assert_eq!(
        f.keys("SELECT Id FROM Opportunity WHERE CloseDate > THIS_MONTH"),
        vec!["o_none"]
    );
    assert_eq!(
        f.keys("SELECT Id FROM Opportunity WHERE CloseDate <= TODAY"),
        vec!["o_big", "o_small", "o_mid"]
    );
    assert_eq!(
        f.keys("SELECT Id FROM Opportunity WHERE CloseDate >= TODAY"),
        vec!["o_big", "o_none"]
    );
    // date-times: UTC day boundaries
    assert_eq!(
        f.keys("SELECT Id FROM Account WHERE CreatedDate = TODAY"),
        vec!["a_acme"]
    );
    assert_eq!(
        f.keys("SELECT Id FROM Account WHERE CreatedDate = LAST_N_DAYS:3"),
        vec!["a_acme", "a_globex"]
    );
    assert_eq!(
        f.keys("SELECT Id FROM Account WHERE CreatedDate = THIS_MONTH"),
        vec!["a_acme", "a_globex"]
    );
    assert_eq!(
        f.keys("SELECT Id FROM Account WHERE CreatedDate < THIS_MONTH"),
        vec!["a_initech"]
    );
    assert_eq!(
        f.keys("SELECT Id FROM Account WHERE CreatedDate IN (YESTERDAY, LAST_MONTH)"),
        vec!["a_initech"]
    );
}

#[tokio::test]
async fn date_functions_in_where_and_group_by() {
    let f = fixture().await;
    assert_eq!(
        f.keys("SELECT Id FROM Opportunity WHERE CALENDAR_MONTH(CloseDate) = 5"),
        vec!["o_big", "o_small"]
    );
    // 2024-05-15 is a Wednesday (4 with Sunday = 1)
    assert_eq!(
        f.keys("SELECT Id FROM Opportunity WHERE DAY_IN_WEEK(CloseDate) = 4"),
        vec!["o_big"]
    );
    assert_eq!(
        f.keys("SELECT Id FROM Account WHERE HOUR_IN_DAY(CreatedDate) = 23"),
        vec!["a_globex"]
    );
    assert_eq!(
        f.keys("SELECT Id FROM Account WHERE DAY_ONLY(CreatedDate) = 2024-05-13"),
        vec!["a_globex"]
    );
    assert_eq!(
        f.keys("SELECT Id FROM Opportunity WHERE CALENDAR_QUARTER(CloseDate) = 2 AND WEEK_IN_MONTH(CloseDate) = 3 AND DAY_IN_MONTH(CloseDate) = 15 AND WEEK_IN_YEAR(CloseDate) = 20 AND DAY_IN_YEAR(CloseDate) = 136 AND CALENDAR_YEAR(CloseDate) = 2024"),
        vec!["o_big"]
    );
    let rows = f.aggregate("SELECT CALENDAR_MONTH(CloseDate) m, COUNT(Id) FROM Opportunity GROUP BY CALENDAR_MONTH(CloseDate)");
    assert_eq!(
        rows,
        vec![
            vec![Value::Int(4), Value::Int(1)],
            vec![Value::Int(5), Value::Int(2)],
            vec![Value::Int(6), Value::Int(1)],
        ]
    );
    let rows = f.aggregate("SELECT DAY_ONLY(CreatedDate), COUNT(Id) FROM Account WHERE CreatedDate != null GROUP BY DAY_ONLY(CreatedDate) ORDER BY DAY_ONLY(CreatedDate) DESC");
    assert_eq!(rows[0], vec![date("2024-05-15"), Value::Int(1)]);
    assert_eq!(rows.len(), 3);
}

// ------------------------------------------------------------------------------- ordering and paging

#[tokio::test]
async fn ordering_nulls_and_paging() {
    let f = fixture().await;
    // default: ascending, nulls first
    assert_eq!(
        f.keys("SELECT Id FROM Account ORDER BY AnnualRevenue"),
        vec![
            "a_initech",
            "a_lookalike",
            "a_inject",
            "a_drop",
            "a_pct",
            "a_acme",
            "a_globex"
        ]
    );
    // DESC keeps nulls first by default
    assert_eq!(
        f.keys("SELECT Id FROM Account ORDER BY AnnualRevenue DESC"),
        vec![
            "a_initech",
            "a_lookalike",
            "a_inject",
            "a_drop",
            "a_globex",
            "a_acme",
            "a_pct"
        ]
    );
    assert_eq!(
        f.keys("SELECT Id FROM Account ORDER BY AnnualRevenue DESC NULLS LAST LIMIT 3"),
        vec!["a_globex", "a_acme", "a_pct"]
    );
    assert_eq!(
        f.keys("SELECT Id FROM Account ORDER BY AnnualRevenue ASC NULLS LAST, Name DESC LIMIT 2 OFFSET 3"),
        vec!["a_initech", "a_lookalike"]
    );
    // text sorts case-insensitively
    assert_eq!(
        f.keys("SELECT Id FROM Contact WHERE LastName IN ('smith', 'Black', 'brown') ORDER BY LastName"),
        vec!["c_black", "c_brown", "c_smith"]
    );
    // ORDER BY a parent field (the orphan's null account sorts first)
    assert_eq!(
        f.keys("SELECT Id FROM Contact ORDER BY Account.Name DESC NULLS FIRST, LastName"),
        vec!["c_orphan", "c_white", "c_black", "c_brown", "c_jones", "c_smith"]
    );
    assert_eq!(
        f.keys("SELECT Id FROM Contact ORDER BY Account.Owner.LastName NULLS LAST, LastName"),
        vec!["c_black", "c_brown", "c_jones", "c_smith", "c_orphan", "c_white"]
    );
    // picklists sort in their defined order (Prospecting < ... < Closed Won < Closed Lost)
    assert_eq!(
        f.keys("SELECT Id FROM Opportunity ORDER BY StageName, Name"),
        vec!["o_big", "o_mid", "o_small", "o_none"]
    );
    assert_eq!(
        f.keys("SELECT Id FROM Opportunity ORDER BY StageName DESC, Name"),
        vec!["o_none", "o_small", "o_big", "o_mid"]
    );
    // offset past the end; no ORDER BY: creation order
    assert!(f
        .ids("SELECT Id FROM Account LIMIT 5 OFFSET 2000")
        .is_empty());
    assert_eq!(
        f.keys("SELECT Id FROM Contact LIMIT 2"),
        vec!["c_smith", "c_jones"]
    );
    assert_eq!(f.ids("SELECT Id FROM Contact LIMIT 0").len(), 0);
}

// ------------------------------------------------------------------------------- shapes

#[tokio::test]
async fn rows_follow_the_column_tree() {
    let f = fixture().await;
    let rows = f.rows("SELECT LastName, Account.Name, Account.Owner.Manager.Email, Account.Owner.LastName, Id FROM Contact WHERE LastName IN ('Smith', 'White', 'Orphan', 'Black') ORDER BY LastName");
    let names: Vec<String> = rows.iter().map(|r| cell_text(&r.cells[0])).collect();
    assert_eq!(names, vec!["Black", "Orphan", "Smith", "White"]);
    // Smith: Account Acme → Owner Two → Manager Boss
    let smith = &rows[2];
    assert_eq!(smith.seq, f.seq("c_smith"));
    let Cell::Parent(Some(acc)) = &smith.cells[1] else {
        panic!("{:?}", smith.cells[1])
    };
    assert_eq!(acc.seq, f.seq("a_acme"));
    assert_eq!(cell_text(&acc.cells[0]), "Acme");
    let Cell::Parent(Some(owner)) = &acc.cells[1] else {
        panic!()
    };
    assert_eq!(owner.seq, f.seq("u_two"));
    let Cell::Parent(Some(manager)) = &owner.cells[0] else {
        panic!()
    };
    assert_eq!(manager.seq, f.seq("u_boss"));
    assert_eq!(cell_text(&manager.cells[0]), "boss@example.com");
    assert_eq!(cell_text(&owner.cells[1]), "Two");
    let Cell::Value(Value::Id(id)) = &smith.cells[2] else {
        panic!()
    };
    assert_eq!(id.to_18(), f.id("Contact", "c_smith"));
    // Black: Globex → Boss, whose Manager is empty
    let Cell::Parent(Some(acc)) = &rows[0].cells[1] else {
        panic!()
    };
    let Cell::Parent(Some(owner)) = &acc.cells[1] else {
        panic!()
    };
    assert_eq!(owner.cells[0], Cell::Parent(None));
    assert_eq!(cell_text(&owner.cells[1]), "Boss");
    // White: Initech has no owner (null in the middle of the path)
    let Cell::Parent(Some(acc)) = &rows[3].cells[1] else {
        panic!()
    };
    assert_eq!(cell_text(&acc.cells[0]), "Initech");
    assert_eq!(acc.cells[1], Cell::Parent(None));
    // Orphan: no account at all
    assert_eq!(rows[1].cells[1], Cell::Parent(None));
    assert_eq!(rows[1].cells.len(), 3);
}

#[tokio::test]
async fn query_rows_keeps_the_page_order() {
    let f = fixture().await;
    let p = f.plan("SELECT Name FROM Account");
    let page = vec![
        f.seq("a_globex"),
        f.seq("a_acme"),
        999_999,
        f.seq("a_initech"),
    ];
    let rows = f.st().read(|tx| tx.query_rows(&p, &page)).unwrap();
    let names: Vec<String> = rows.iter().map(|r| cell_text(&r.cells[0])).collect();
    assert_eq!(
        names,
        vec!["Globex", "Acme", "Initech"],
        "unknown sequences are skipped"
    );
}

#[tokio::test]
async fn child_subqueries_per_parent() {
    let f = fixture().await;
    let rows = f.rows("SELECT Name, (SELECT LastName, Account.Name FROM Contacts ORDER BY LastName DESC LIMIT 2), (SELECT Name FROM Opportunities WHERE Amount > 60 ORDER BY Amount), (SELECT Code__c FROM Invoices__r) FROM Account WHERE Name IN ('Acme', 'Globex', 'Initech') ORDER BY Name");
    assert_eq!(rows.len(), 3);
    let kids = |r: &QueryRow, k: usize| -> Vec<String> {
        match &r.cells[k] {
            Cell::Children(rows) => rows.iter().map(|c| cell_text(&c.cells[0])).collect(),
            other => panic!("{other:?}"),
        }
    };
    // Acme: Smith, Jones, Brown (+ deleted Gone) → top 2 descending
    assert_eq!(kids(&rows[0], 1), vec!["Smith", "Jones"]);
    assert_eq!(kids(&rows[0], 2), vec!["Big"]);
    assert_eq!(kids(&rows[0], 3), vec!["INV-1"]);
    assert_eq!(kids(&rows[1], 1), vec!["Black"]);
    assert_eq!(kids(&rows[1], 2), vec!["Mid"]);
    assert!(kids(&rows[1], 3).is_empty());
    assert_eq!(kids(&rows[2], 1), vec!["White"]);
    assert!(kids(&rows[2], 2).is_empty());
    // parent columns inside a child row
    let Cell::Children(c) = &rows[0].cells[1] else {
        panic!()
    };
    assert_eq!(c[0].seq, f.seq("c_smith"));
    let Cell::Parent(Some(acc)) = &c[0].cells[1] else {
        panic!()
    };
    assert_eq!(cell_text(&acc.cells[0]), "Acme");
    // without LIMIT: all live children, in the subquery's order
    let rows = f.rows("SELECT Id, (SELECT LastName FROM Contacts ORDER BY LastName) FROM Account WHERE Name = 'Acme'");
    assert_eq!(kids(&rows[0], 1), vec!["Brown", "Jones", "Smith"]);
    // queryAll includes the deleted child
    let rows = f.rows_with("SELECT Id, (SELECT LastName FROM Contacts ORDER BY LastName) FROM Account WHERE Name = 'Acme'", &query_all());
    assert_eq!(kids(&rows[0], 1), vec!["Brown", "Gone", "Jones", "Smith"]);
    // OFFSET per parent (outer LIMIT 1)
    let rows = f.rows("SELECT Id, (SELECT LastName FROM Contacts ORDER BY LastName LIMIT 1 OFFSET 1) FROM Account WHERE Name = 'Acme' LIMIT 1");
    assert_eq!(kids(&rows[0], 1), vec!["Jones"]);
}

#[tokio::test]
async fn to_label_maps_picklist_values() {
    let f = fixture().await;
    let rows =
        f.rows("SELECT toLabel(Tags__c) lbl, Tags__c FROM Invoice__c WHERE Code__c = 'INV-1'");
    assert_eq!(cell_text(&rows[0].cells[0]), "Red label;Green label");
    assert_eq!(cell_text(&rows[0].cells[1]), "Red;Green");
}

// ------------------------------------------------------------------------------- counts and aggregates

#[tokio::test]
async fn count_queries() {
    let f = fixture().await;
    assert_eq!(f.count("SELECT COUNT() FROM Contact"), 6);
    assert_eq!(
        f.count("SELECT COUNT() FROM Contact WHERE Account.Name = 'Acme'"),
        3
    );
    assert_eq!(f.count("SELECT COUNT() FROM Contact LIMIT 4"), 4);
    assert_eq!(f.count("SELECT COUNT() FROM Contact LIMIT 4 OFFSET 5"), 1);
    assert_eq!(
        f.count("SELECT COUNT() FROM Account WHERE Industry != null GROUP BY Industry"),
        2
    );
    let p = f.plan_with("SELECT COUNT() FROM Contact", &query_all());
    assert_eq!(f.st().read(|tx| tx.query_count(&p)).unwrap(), 7);
}

#[tokio::test]
async fn aggregates_with_group_by_and_having() {
    let f = fixture().await;
    let rows = f.aggregate("SELECT StageName, COUNT(Id), SUM(Amount) total, AVG(Amount), MIN(Amount), MAX(CloseDate), COUNT_DISTINCT(AccountId) FROM Opportunity GROUP BY StageName ORDER BY StageName");
    assert_eq!(
        rows,
        // (picklist order)
        vec![
            vec![
                text("Prospecting"),
                Value::Int(2),
                Value::Double(175.0),
                Value::Double(87.5),
                Value::Double(75.0),
                date("2024-05-15"),
                Value::Int(2)
            ],
            vec![
                text("Closed Won"),
                Value::Int(1),
                Value::Double(50.0),
                Value::Double(50.0),
                Value::Double(50.0),
                date("2024-05-10"),
                Value::Int(1)
            ],
            vec![
                text("Closed Lost"),
                Value::Int(1),
                Value::Null,
                Value::Null,
                Value::Null,
                date("2024-06-01"),
                Value::Int(1)
            ],
        ]
    );
    let rows = f.aggregate("SELECT StageName, SUM(Amount) FROM Opportunity GROUP BY StageName HAVING SUM(Amount) > 60 OR COUNT(Id) > 5");
    assert_eq!(rows, vec![vec![text("Prospecting"), Value::Double(175.0)]]);
    // group by a parent field, order by an aggregate, limit
    let rows = f.aggregate("SELECT Account.Name, COUNT(Id) n FROM Contact GROUP BY Account.Name ORDER BY COUNT(Id) DESC, Account.Name LIMIT 2");
    assert_eq!(
        rows,
        vec![
            vec![text("Acme"), Value::Int(3)],
            vec![Value::Null, Value::Int(1)]
        ]
    );
    // group by a reference: ids come back as ids
    let rows = f.aggregate("SELECT AccountId, MAX(LastName) FROM Contact WHERE AccountId != null GROUP BY AccountId HAVING COUNT(Id) > 1");
    let Value::Id(id) = &rows[0][0] else {
        panic!("{rows:?}")
    };
    assert_eq!(id.to_18(), f.id("Account", "a_acme"));
    assert_eq!(rows[0][1], text("Smith"));
    // no GROUP BY: one row, even over nothing
    assert_eq!(
        f.aggregate("SELECT COUNT(Id), SUM(AnnualRevenue), COUNT(Industry) FROM Account"),
        vec![vec![Value::Int(7), Value::Double(6010.0), Value::Int(3)]]
    );
    assert_eq!(
        f.aggregate("SELECT COUNT(Id), MAX(Name) FROM Account WHERE Name = 'nobody'"),
        vec![vec![Value::Int(0), Value::Null]]
    );
    // toLabel on a grouped multi-picklist-free picklist, grouped booleans
    let rows = f.aggregate(
        "SELECT toLabel(Industry), COUNT(Id) FROM Account WHERE Industry != null GROUP BY Industry",
    );
    assert_eq!(
        rows,
        vec![
            vec![text("Banking"), Value::Int(1)],
            vec![text("Energy"), Value::Int(2)]
        ]
    );
    // queryAll counts the deleted contact
    let p = f.plan_with("SELECT COUNT(Id) FROM Contact", &query_all());
    let rows = f.st().read(|tx| tx.query_aggregate(&p)).unwrap();
    assert_eq!(rows[0].cells, vec![Cell::Value(Value::Int(7))]);
}

// ------------------------------------------------------------------------------- queryAll

#[tokio::test]
async fn query_all_includes_soft_deleted_rows() {
    let f = fixture().await;
    let contact = f.obj("Contact");
    let deleted = contact.field_index("IsDeleted").unwrap();
    let smith = f.seq("c_smith");
    let c2 = contact.clone();
    f.st()
        .write(move |tx| Ok(tx.update(&c2, smith, &[(deleted, Value::Bool(true))])?))
        .await
        .unwrap();
    assert!(!f.keys("SELECT Id FROM Contact").contains(&"c_smith"));
    let p = f.plan_with(
        "SELECT LastName, IsDeleted FROM Contact WHERE AccountId != null ORDER BY LastName",
        &query_all(),
    );
    let rows = f.rows_with(
        "SELECT LastName, IsDeleted FROM Contact WHERE AccountId != null ORDER BY LastName",
        &query_all(),
    );
    assert!(p.include_deleted);
    let got: Vec<(String, Cell)> = rows
        .iter()
        .map(|r| (cell_text(&r.cells[0]), r.cells[1].clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("Black".to_string(), Cell::Value(Value::Bool(false))),
            ("Brown".to_string(), Cell::Value(Value::Bool(false))),
            ("Gone".to_string(), Cell::Value(Value::Bool(true))),
            ("Jones".to_string(), Cell::Value(Value::Bool(false))),
            ("Smith".to_string(), Cell::Value(Value::Bool(true))),
            ("White".to_string(), Cell::Value(Value::Bool(false))),
        ]
    );
    // a deleted parent reads as an empty lookup in a plain query
    let account = f.obj("Account");
    let acc_deleted = account.field_index("IsDeleted").unwrap();
    let globex = f.seq("a_globex");
    f.st()
        .write(move |tx| Ok(tx.update(&account, globex, &[(acc_deleted, Value::Bool(true))])?))
        .await
        .unwrap();
    let rows = f.rows("SELECT Account.Name FROM Contact WHERE LastName = 'Black'");
    assert_eq!(rows[0].cells[0], Cell::Parent(None));
    let rows = f.rows_with(
        "SELECT Account.Name FROM Contact WHERE LastName = 'Black'",
        &query_all(),
    );
    assert!(matches!(&rows[0].cells[0], Cell::Parent(Some(_))));
}

// ------------------------------------------------------------------------------- safety

#[tokio::test]
async fn injection_shaped_values_match_literally() {
    let f = fixture().await;
    assert_eq!(
        f.keys(r"SELECT Id FROM Account WHERE Name = '\' OR 1=1 --'"),
        vec!["a_inject"]
    );
    assert_eq!(
        f.keys(r#"SELECT Id FROM Account WHERE Name = '"; DROP TABLE sobj_Account; --'"#),
        vec!["a_drop"]
    );
    assert_eq!(
        f.keys(r#"SELECT Id FROM Account WHERE Name IN ('x\'); DROP TABLE sobj_Contact; --', '"; DROP TABLE sobj_Account; --')"#),
        vec!["a_drop"]
    );
    assert!(f
        .keys(r"SELECT Id FROM Account WHERE Name LIKE '%\' OR \'1\'=\'1'")
        .is_empty());
    assert!(f
        .keys(r"SELECT Id FROM Invoice__c WHERE Tags__c INCLUDES ('Red\'); DROP TABLE sobj_Invoice__c; --')")
        .is_empty());
    // the tables are intact
    assert_eq!(f.count("SELECT COUNT() FROM Account"), 7);
    assert_eq!(f.count("SELECT COUNT() FROM Contact"), 6);
    assert_eq!(f.count("SELECT COUNT() FROM Invoice__c"), 3);
    // and the values never reached the SQL text
    let p = f.plan(r#"SELECT Id FROM Account WHERE Name = '"; DROP TABLE sobj_Account; --' AND Name LIKE '%OR 1=1%'"#);
    let st = crate::query::ids_stmt(&p, f.marker());
    assert!(
        !st.sql.contains("DROP") && !st.sql.contains("1=1"),
        "{}",
        st.sql
    );
    assert_eq!(st.params.len(), 2);
}

// ------------------------------------------------------------------------------- index use

/// `EXPLAIN QUERY PLAN` details of the ids statement of `q`.
fn explain(f: &Fixture, q: &str) -> Vec<String> {
    let p = f.plan(q);
    let st = crate::query::ids_stmt(&p, f.marker());
    let conn = rusqlite::Connection::open(f.store.path()).unwrap();
    let mut stmt = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {}", st.sql))
        .unwrap();
    let rows = stmt
        .query_map(rusqlite::params_from_iter(st.params.iter()), |r| {
            r.get::<_, String>(3)
        })
        .unwrap();
    rows.map(|r| r.unwrap()).collect()
}

fn assert_searches(f: &Fixture, q: &str, index: &str) {
    let plan = explain(f, q);
    if std::env::var_os("SHOW_PLANS").is_some() {
        eprintln!("{q}\n  {}", plan.join("\n  "));
    }
    let base: Vec<&String> = plan
        .iter()
        .filter(|d| d.contains(" t0 ") || d.ends_with(" t0"))
        .collect();
    assert!(
        base.iter()
            .any(|d| d.starts_with("SEARCH t0") && d.contains(index)),
        "{q}: expected an index search using {index}, got {plan:?}"
    );
    assert!(
        !base.iter().any(|d| d.starts_with("SCAN t0")),
        "{q}: the base table is scanned: {plan:?}"
    );
}

#[tokio::test]
async fn selective_filters_use_indexes() {
    let f = fixture().await;
    let acme = f.id("Account", "a_acme");
    assert_searches(
        &f,
        &format!("SELECT Id FROM Account WHERE Id = '{acme}'"),
        "INTEGER PRIMARY KEY",
    );
    assert_searches(
        &f,
        &format!(
            "SELECT Id FROM Account WHERE Id IN ('{acme}', '{}')",
            f.id("Account", "a_globex")
        ),
        "INTEGER PRIMARY KEY",
    );
    assert_searches(
        &f,
        &format!("SELECT Id, LastName FROM Contact WHERE AccountId = '{acme}' ORDER BY LastName"),
        "ix_Contact_AccountId",
    );
    assert_searches(
        &f,
        "SELECT Id FROM Account WHERE Name = 'Acme'",
        "ix_Account_Name",
    );
    assert_searches(
        &f,
        "SELECT Id FROM Product2 WHERE ExternalId = 'W-1'",
        "ix_Product2_ExternalId",
    );
    assert_searches(
        &f,
        "SELECT Id FROM Invoice__c WHERE Code__c = 'INV-1'",
        "ix_Invoice__c_Code__c",
    );
    assert_searches(
        &f,
        "SELECT Id FROM User WHERE Username = 'two@example.com'",
        "ix_User_Username",
    );
    assert_searches(
        &f,
        "SELECT Id FROM Contact WHERE Account.Name = 'Acme'",
        "ix_Contact_AccountId",
    );
    assert_searches(
        &f,
        "SELECT Id FROM Account WHERE Id IN (SELECT AccountId FROM Contact WHERE LastName = 'Smith')",
        "INTEGER PRIMARY KEY",
    );
    // the same filters still find their rows
    assert_eq!(
        f.keys("SELECT Id FROM Invoice__c WHERE Code__c = 'inv-1'"),
        vec!["i_1"]
    );
    assert_eq!(
        f.keys("SELECT Id FROM User WHERE Username = 'TWO@example.com'"),
        vec!["u_two"]
    );
    assert_eq!(
        f.keys("SELECT Id FROM Product2 WHERE ExternalId = 'W-1'"),
        vec!["p_widget"]
    );
}
