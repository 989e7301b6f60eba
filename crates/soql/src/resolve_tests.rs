//! Tests of resolution against the standard schema plus a custom object: names, access,
//! shapes, aggregates, typing of literals, error codes and caret positions.

use model::spec::{CustomFieldSpec, CustomObjectSpec, ValueSet, ValueSetDefinition, ValueSpec};
use model::{ErrorCode, FieldDef, FieldType, Id, KeyPrefix, ObjectDef, Schema, Value};

use crate::plan::*;
use crate::{caret_message, compile, Access, FullAccess, QueryError, ResolveOptions, Span};

// ------------------------------------------------------------------------------- fixtures

fn field(name: &str, spec: CustomFieldSpec) -> FieldDef {
    spec.to_field(name).unwrap()
}

fn typed(ty: &str) -> CustomFieldSpec {
    CustomFieldSpec {
        ty: Some(ty.into()),
        ..Default::default()
    }
}

fn lookup(target: &str, children: &str) -> CustomFieldSpec {
    CustomFieldSpec {
        reference_to: Some(target.into()),
        relationship_name: Some(children.into()),
        ..typed("Lookup")
    }
}

fn text(len: u32) -> CustomFieldSpec {
    CustomFieldSpec {
        length: Some(len),
        ..typed("Text")
    }
}

/// The standard objects plus `Invoice__c` (a child of Account through `Account__c`).
fn schema() -> Schema {
    let mut defs = model::standard::standard_objects();
    let spec = CustomObjectSpec {
        full_name: "Invoice__c".into(),
        label: Some("Invoice".into()),
        ..Default::default()
    };
    let mut inv = spec.to_object(KeyPrefix::custom(0)).unwrap();
    let values = ["Red", "Green", "Blue"]
        .iter()
        .map(|v| ValueSpec {
            full_name: Some(v.to_string()),
            ..Default::default()
        })
        .collect();
    let tags = CustomFieldSpec {
        value_set: Some(ValueSet {
            restricted: None,
            value_set_definition: Some(ValueSetDefinition {
                value: values,
                sorted: None,
            }),
        }),
        ..typed("MultiselectPicklist")
    };
    let code = CustomFieldSpec {
        external_id: Some(true),
        unique: Some(true),
        ..text(20)
    };
    let fields = [
        ("Account__c", lookup("Account", "Invoices")),
        ("Total__c", typed("Currency")),
        ("Due__c", typed("Date")),
        ("Tags__c", tags),
        ("Code__c", code),
        ("Secret__c", text(20)),
        ("Paid__c", typed("Checkbox")),
    ];
    for (name, spec) in fields {
        inv.push_field(field(name, spec)).unwrap();
    }
    defs.push(inv);
    Schema::build(defs, 1).unwrap()
}

/// Hides some objects and fields.
struct Hide {
    objects: &'static [&'static str],
    fields: &'static [(&'static str, &'static str)],
}

impl Access for Hide {
    fn object_readable(&self, o: &ObjectDef) -> bool {
        !self.objects.contains(&o.name.as_str())
    }
    fn field_readable(&self, o: &ObjectDef, f: &FieldDef) -> bool {
        !self
            .fields
            .iter()
            .any(|(on, fname)| *on == o.name && *fname == f.name)
    }
}

const HIDE: Hide = Hide {
    objects: &["Order"],
    fields: &[("Invoice__c", "Secret__c"), ("Contact", "ReportsToId")],
};

/// Wednesday 2024-05-15.
fn opts() -> ResolveOptions {
    ResolveOptions {
        today: (2024, 5, 15),
        now_ms: 1_715_774_400_000,
        include_deleted: false,
    }
}

fn run(q: &str, access: &dyn Access, o: &ResolveOptions) -> Result<Plan, QueryError> {
    compile(q, &schema(), access, o)
}

fn ok(q: &str) -> Plan {
    match run(q, &FullAccess, &opts()) {
        Ok(p) => p,
        Err(e) => panic!("{q}: {e}"),
    }
}

fn err(q: &str) -> QueryError {
    err_with(q, &FullAccess)
}

fn err_with(q: &str, access: &dyn Access) -> QueryError {
    match run(q, access, &opts()) {
        Ok(p) => panic!("{q}: expected an error, got {p:?}"),
        Err(e) => e,
    }
}

/// Checks code and the full message: caret at the first occurrence of `at`, then `detail`.
fn check_caret(e: &QueryError, q: &str, code: ErrorCode, at: &str, detail: &str) {
    assert_eq!(e.code, code, "{q}: {}", e.message);
    let pos = q.find(at).unwrap_or_else(|| panic!("{at:?} not in {q:?}"));
    assert_eq!(
        e.message,
        caret_message(q, Span::new(pos, pos), detail),
        "{q}"
    );
}

fn no_such_column(name: &str, entity: &str) -> String {
    format!("No such column '{name}' on entity '{entity}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.")
}

fn bad_relationship(name: &str) -> String {
    format!("Didn't understand relationship '{name}' in field path. If you are attempting to use a custom relationship, be sure to append the '__r' after the custom relationship name. Please reference your WSDL or the describe call for the appropriate names.")
}

fn unsupported_type(name: &str) -> String {
    format!("sObject type '{name}' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names.")
}

fn filter_of(q: &str) -> Expr {
    ok(q).filter.expect("a WHERE clause")
}

fn field_name(p: &Plan, c: &Column) -> String {
    match c {
        Column::Field { field, .. } => p.object.fields[*field].name.clone(),
        other => panic!("not a field column: {other:?}"),
    }
}

fn date(s: &str) -> Value {
    Value::Date(model::value::parse_date(s).unwrap())
}

fn ms(s: &str) -> Value {
    Value::DateTime(model::value::parse_datetime(s).unwrap())
}

// ------------------------------------------------------------------------------- names

#[test]
fn names_are_case_insensitive_and_canonical() {
    let p = ok("select id, NAME, annualrevenue from ACCOUNT");
    assert_eq!(p.kind, PlanKind::Records);
    assert_eq!(p.object.name, "Account");
    assert_eq!(p.column_keys(), vec!["Id", "Name", "AnnualRevenue"]);
    assert!(!p.include_deleted);
    assert!(p.filter.is_none() && p.order_by.is_empty() && p.limit.is_none());
    let p = ok("SELECT name, CODE__C FROM invoice__C");
    assert_eq!(p.object.name, "Invoice__c");
    assert_eq!(p.column_keys(), vec!["Name", "Code__c"]);
}

#[test]
fn unknown_object_is_invalid_type_with_caret() {
    let q = "SELECT Id FROM Acount";
    check_caret(
        &err(q),
        q,
        ErrorCode::InvalidType,
        "Acount",
        &unsupported_type("Acount"),
    );
    // platform-event-like and unreadable objects behave as missing
    let q = "SELECT Id FROM Order";
    check_caret(
        &err_with(q, &HIDE),
        q,
        ErrorCode::InvalidType,
        "Order",
        &unsupported_type("Order"),
    );
}

#[test]
fn unknown_field_matches_the_reference_message() {
    let q = "SELECT Idd FROM Account";
    let e = err(q);
    assert_eq!(e.code, ErrorCode::InvalidField);
    assert_eq!(
        e.message,
        "\nSELECT Idd FROM Account\n       ^\nERROR at Row:1:Column:8\nNo such column 'Idd' on entity 'Account'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names."
    );
    // in WHERE and ORDER BY, multi-line
    let q = "SELECT Id\nFROM Account\nWHERE Nme = 'x'";
    check_caret(
        &err(q),
        q,
        ErrorCode::InvalidField,
        "Nme",
        &no_such_column("Nme", "Account"),
    );
    assert!(err(q).message.contains("ERROR at Row:3:Column:7"));
    let q = "SELECT Id FROM Account ORDER BY Foo__c";
    check_caret(
        &err(q),
        q,
        ErrorCode::InvalidField,
        "Foo__c",
        &no_such_column("Foo__c", "Account"),
    );
}

#[test]
fn relationship_errors_point_at_the_path() {
    let q = "SELECT Id, Acount.Name FROM Contact";
    check_caret(
        &err(q),
        q,
        ErrorCode::InvalidField,
        "Acount",
        &bad_relationship("Acount"),
    );
    let q = "SELECT Id FROM Contact WHERE Account.Ownr.Name = 'x'";
    check_caret(
        &err(q),
        q,
        ErrorCode::InvalidField,
        "Account.Ownr",
        &bad_relationship("Ownr"),
    );
    let q = "SELECT Account.Nme FROM Contact";
    check_caret(
        &err(q),
        q,
        ErrorCode::InvalidField,
        "Account",
        &no_such_column("Nme", "Account"),
    );
    // a field that is not a lookup is no relationship; a relationship is no column
    let q = "SELECT Name.Foo FROM Contact";
    check_caret(
        &err(q),
        q,
        ErrorCode::InvalidField,
        "Name",
        &bad_relationship("Name"),
    );
    let q = "SELECT Account FROM Contact";
    check_caret(
        &err(q),
        q,
        ErrorCode::InvalidField,
        "Account",
        &no_such_column("Account", "Contact"),
    );
    // custom relationships need __r
    ok("SELECT Account__r.Name FROM Invoice__c");
    let q = "SELECT Account__c.Name FROM Invoice__c";
    check_caret(
        &err(q),
        q,
        ErrorCode::InvalidField,
        "Account__c",
        &bad_relationship("Account__c"),
    );
}

#[test]
fn field_level_security_hides_fields_and_relationships() {
    let q = "SELECT Id, Secret__c FROM Invoice__c";
    check_caret(
        &err_with(q, &HIDE),
        q,
        ErrorCode::InvalidField,
        "Secret__c",
        &no_such_column("Secret__c", "Invoice__c"),
    );
    assert!(run(q, &FullAccess, &opts()).is_ok());
    // hidden in WHERE too
    let q = "SELECT Id FROM Invoice__c WHERE Secret__c = 'x'";
    assert_eq!(err_with(q, &HIDE).code, ErrorCode::InvalidField);
    // FIELDS() skips it
    let p = run(
        "SELECT FIELDS(CUSTOM) FROM Invoice__c LIMIT 10",
        &HIDE,
        &opts(),
    )
    .unwrap();
    assert!(!p.column_keys().contains(&"Secret__c"));
    assert!(p.column_keys().contains(&"Code__c"));
    // a hidden lookup field hides its relationship
    let q = "SELECT ReportsTo.Name FROM Contact";
    check_caret(
        &err_with(q, &HIDE),
        q,
        ErrorCode::InvalidField,
        "ReportsTo",
        &bad_relationship("ReportsTo"),
    );
    // a lookup to an unreadable object is no relationship; its child relationship is gone too
    let q = "SELECT Id, (SELECT Id FROM Orders) FROM Account";
    let e = err_with(q, &HIDE);
    assert_eq!(e.code, ErrorCode::InvalidType);
    assert!(e
        .message
        .contains("Didn't understand relationship 'Orders' in FROM part of query call."));
}

#[test]
fn aliases_and_object_name_qualifiers() {
    let p = ok("SELECT c.LastName, c.Account.Name FROM Contact c WHERE c.Account.Name = 'x' ORDER BY c.LastName");
    assert_eq!(p.column_keys(), vec!["LastName", "Account"]);
    let p2 = ok("SELECT LastName, Account.Name FROM Contact AS c WHERE Account.Name = 'x' ORDER BY LastName");
    assert_eq!(p.filter, p2.filter);
    assert_eq!(p.order_by, p2.order_by);
    ok("SELECT Contact.LastName FROM Contact");
    // the alias is not a field
    let q = "SELECT c.Nope FROM Contact c";
    check_caret(
        &err(q),
        q,
        ErrorCode::InvalidField,
        "c.Nope",
        &no_such_column("Nope", "Contact"),
    );
    // on Contact, `Account.` is the relationship, not a qualifier
    let p = ok("SELECT Account.Name FROM Contact");
    assert!(matches!(&p.columns[0], Column::Parent { key, .. } if key == "Account"));
    // on Account, `Account.Name` is the object's own Name
    let p = ok("SELECT Account.Name FROM Account");
    assert_eq!(p.column_keys(), vec!["Name"]);
}

// ------------------------------------------------------------------------------- shapes

#[test]
fn parent_paths_merge_in_first_mention_order() {
    let p = ok("SELECT Account.Name, Id, Account.Owner.Email, Account.Id, Owner.Name FROM Contact");
    assert_eq!(p.column_keys(), vec!["Account", "Id", "Owner"]);
    let Column::Parent {
        key,
        object,
        columns,
        field,
    } = &p.columns[0]
    else {
        panic!()
    };
    assert_eq!(key, "Account");
    assert_eq!(object.name, "Account");
    assert_eq!(p.object.fields[*field].name, "AccountId");
    let keys: Vec<&str> = columns.iter().map(Column::key).collect();
    assert_eq!(keys, vec!["Name", "Owner", "Id"]);
    let Column::Parent {
        object, columns, ..
    } = &columns[1]
    else {
        panic!()
    };
    assert_eq!(object.name, "User");
    assert_eq!(field_name_in(object, &columns[0]), "Email");
}

fn field_name_in(o: &ObjectDef, c: &Column) -> String {
    match c {
        Column::Field { field, .. } => o.fields[*field].name.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn parent_paths_are_limited_to_five_hops() {
    let p = ok("SELECT Account.Owner.Manager.Manager.Profile.Name FROM Contact");
    assert_eq!(p.column_keys(), vec!["Account"]);
    let q = "SELECT Id FROM Contact WHERE Account.Owner.Manager.Manager.Manager.Profile.Name = 'x'";
    let e = err(q);
    assert_eq!(e.code, ErrorCode::MalformedQuery);
    assert!(
        e.message.contains("ERROR at Row:1:Column:30"),
        "{}",
        e.message
    );
}

#[test]
fn child_subqueries() {
    let p = ok("SELECT Name, (SELECT LastName, Account.Name FROM Contacts WHERE LastName != null ORDER BY LastName DESC LIMIT 2), (SELECT Name FROM a.Invoices__r) FROM Account a");
    assert_eq!(p.column_keys(), vec!["Name", "Contacts", "Invoices__r"]);
    let Column::Children { plan, .. } = &p.columns[1] else {
        panic!()
    };
    assert_eq!(plan.object.name, "Contact");
    assert_eq!(plan.kind, PlanKind::Records);
    assert_eq!(plan.limit, Some(2));
    let link = plan.link.as_ref().unwrap();
    assert_eq!(plan.object.fields[link.field].name, "AccountId");
    assert_eq!(link.parent.name, "Account");
    assert_eq!(plan.column_keys(), vec!["LastName", "Account"]);
    assert!(plan.order_by[0].descending && !plan.order_by[0].nulls_last);
    let Column::Children { plan, .. } = &p.columns[2] else {
        panic!()
    };
    assert_eq!(plan.object.name, "Invoice__c");
    assert_eq!(
        plan.object.fields[plan.link.as_ref().unwrap().field].name,
        "Account__c"
    );
    // canonical casing of the relationship name
    let p = ok("SELECT (SELECT Id FROM contacts) FROM Account");
    assert_eq!(p.column_keys(), vec!["Contacts"]);

    let q = "SELECT Id, (SELECT Id FROM Contactz) FROM Account";
    let e = err(q);
    check_caret(&e, q, ErrorCode::InvalidType, "Contactz", "Didn't understand relationship 'Contactz' in FROM part of query call. If you are attempting to use a custom relationship, be sure to append the '__r' after the custom relationship name. Please reference your WSDL or the describe call for the appropriate names.");
    // aggregates are not allowed inside
    assert_eq!(
        err("SELECT Id, (SELECT COUNT() FROM Contacts) FROM Account").code,
        ErrorCode::MalformedQuery
    );
    // OFFSET in a subquery needs LIMIT 1 outside
    assert_eq!(
        err("SELECT Id, (SELECT Id FROM Contacts OFFSET 1) FROM Account").code,
        ErrorCode::MalformedQuery
    );
    let p = ok("SELECT Id, (SELECT Id FROM Contacts LIMIT 5 OFFSET 1) FROM Account LIMIT 1");
    let Column::Children { plan, .. } = &p.columns[1] else {
        panic!()
    };
    assert_eq!((plan.limit, plan.offset), (Some(5), Some(1)));
}

#[test]
fn at_most_twenty_child_subqueries() {
    let mut defs = model::standard::standard_objects();
    let spec = CustomObjectSpec {
        full_name: "Many__c".into(),
        ..Default::default()
    };
    let mut many = spec.to_object(KeyPrefix::custom(0)).unwrap();
    for i in 0..21 {
        many.push_field(field(
            &format!("A{i}__c"),
            lookup("Account", &format!("R{i}")),
        ))
        .unwrap();
    }
    defs.push(many);
    let schema = Schema::build(defs, 1).unwrap();
    let subs: Vec<String> = (0..21)
        .map(|i| format!("(SELECT Id FROM R{i}__r)"))
        .collect();
    let q20 = format!("SELECT Id, {} FROM Account", subs[..20].join(", "));
    let p = compile(&q20, &schema, &FullAccess, &opts()).unwrap();
    assert_eq!(p.columns.len(), 21);
    let q21 = format!("SELECT Id, {} FROM Account", subs.join(", "));
    let e = compile(&q21, &schema, &FullAccess, &opts()).unwrap_err();
    assert_eq!(e.code, ErrorCode::MalformedQuery);
    assert!(e.message.contains("at most 20"), "{}", e.message);
}

#[test]
fn duplicate_fields_are_refused() {
    for (q, dup) in [
        ("SELECT Id, id FROM Account", "Id"),
        ("SELECT Id, FIELDS(STANDARD) FROM Account", "Id"),
        (
            "SELECT Account.Name, account.NAME FROM Contact",
            "Account.Name",
        ),
        ("SELECT COUNT(Id), COUNT(Name) expr0 FROM Account", "expr0"),
    ] {
        let e = err(q);
        assert_eq!(e.code, ErrorCode::InvalidField, "{q}");
        assert_eq!(e.message, format!("duplicate field selected: {dup}"), "{q}");
    }
    // the same field through different paths is fine
    ok("SELECT AccountId, Account.Id FROM Contact");
}

#[test]
fn fields_function_expands_readable_fields() {
    let p = ok("SELECT FIELDS(STANDARD) FROM Invoice__c");
    assert!(p.column_keys().contains(&"Id"));
    assert!(!p.column_keys().iter().any(|k| k.ends_with("__c")));
    let p = ok("SELECT Id, FIELDS(CUSTOM) FROM Invoice__c LIMIT 200");
    assert_eq!(p.column_keys()[0], "Id");
    assert!(p.column_keys()[1..].iter().all(|k| k.ends_with("__c")));
    let p = ok("SELECT FIELDS(ALL) FROM Account LIMIT 200");
    assert_eq!(p.columns.len(), p.object.fields.len());
}

#[test]
fn to_label_format_and_convert_currency() {
    let p = ok("SELECT toLabel(Industry), FORMAT(AnnualRevenue) rev, convertCurrency(AnnualRevenue), toLabel(Owner.Name) FROM Account");
    assert_eq!(
        p.column_keys(),
        vec!["Industry", "rev", "AnnualRevenue", "Owner"]
    );
    assert!(matches!(
        &p.columns[0],
        Column::Field { to_label: true, .. }
    ));
    assert!(matches!(
        &p.columns[1],
        Column::Field {
            to_label: false,
            ..
        }
    ));
    assert_eq!(field_name(&p, &p.columns[1]), "AnnualRevenue");
    assert_eq!(
        err("SELECT convertCurrency(Name) FROM Account").code,
        ErrorCode::MalformedQuery
    );
}

#[test]
fn unsupported_constructs_are_clear_malformed_queries() {
    let q = "SELECT TYPEOF Owner WHEN User THEN Name END FROM Account";
    let e = err(q);
    check_caret(
        &e,
        q,
        ErrorCode::MalformedQuery,
        "TYPEOF",
        "TYPEOF is not supported: 'Owner' is not a polymorphic relationship in this org",
    );
    let e = err("SELECT COUNT(Id) FROM Account GROUP BY ROLLUP(Name)");
    assert_eq!(e.code, ErrorCode::MalformedQuery);
    assert!(e.message.contains("ROLLUP"));
    assert_eq!(
        err("SELECT Id FROM Account USING SCOPE mine").code,
        ErrorCode::MalformedQuery
    );
    ok("SELECT Id FROM Account USING SCOPE Everything WITH SECURITY_ENFORCED FOR VIEW");
}

#[test]
fn offset_is_limited_to_2000() {
    assert_eq!(
        ok("SELECT Id FROM Account LIMIT 10 OFFSET 2000").offset,
        Some(2000)
    );
    let e = err("SELECT Id FROM Account OFFSET 2001");
    assert_eq!(e.code, ErrorCode::NumberOutsideValidRange);
    assert_eq!(e.message, "Maximum SOQL offset allowed is 2000");
}

#[test]
fn order_by_defaults_and_rules() {
    let p = ok("SELECT Id FROM Contact ORDER BY LastName, Account.Name DESC, FirstName DESC NULLS LAST, Email NULLS LAST");
    let flags: Vec<(bool, bool)> = p
        .order_by
        .iter()
        .map(|t| (t.descending, t.nulls_last))
        .collect();
    assert_eq!(
        flags,
        vec![(false, false), (true, false), (true, true), (false, true)]
    );
    assert!(matches!(&p.order_by[1].key, Operand::Scalar(Scalar::Field(f)) if f.path.len() == 1));
    let q = "SELECT Id FROM Account ORDER BY Description";
    check_caret(
        &err(q),
        q,
        ErrorCode::MalformedQuery,
        "Description",
        "field 'Description' can not be sorted in a query call",
    );
    assert_eq!(
        err("SELECT Id FROM Account ORDER BY COUNT(Id)").code,
        ErrorCode::MalformedQuery
    );
}

// ------------------------------------------------------------------------------- counts and aggregates

#[test]
fn count_query() {
    let p = ok("SELECT COUNT() FROM Contact WHERE LastName = 'x' LIMIT 5");
    assert_eq!(p.kind, PlanKind::Count);
    assert!(p.columns.is_empty());
    assert_eq!(p.limit, Some(5));
    assert!(p.filter.is_some());
}

#[test]
fn aggregate_keys_skip_aliased_items() {
    let p = ok("SELECT COUNT(Id) c, SUM(Amount), StageName, MAX(Amount), CALENDAR_YEAR(CloseDate), MIN(CloseDate) earliest FROM Opportunity GROUP BY StageName, CALENDAR_YEAR(CloseDate)");
    assert_eq!(p.kind, PlanKind::Aggregate);
    assert_eq!(
        p.column_keys(),
        vec!["c", "expr0", "StageName", "expr1", "expr2", "earliest"]
    );
    assert_eq!(p.group_by.len(), 2);
    assert!(matches!(
        &p.columns[4],
        Column::Group {
            expr: Scalar::Date {
                func: DateFunction::CalendarYear,
                ..
            },
            ..
        }
    ));
    let Column::Aggregate { agg, .. } = &p.columns[1] else {
        panic!()
    };
    assert_eq!(agg.func, AggFunc::Sum);
    assert_eq!(agg.value_type(), FieldType::Currency);
    // grouped parent fields are keyed by their last segment
    let p = ok("SELECT Account.Name, COUNT(Id) FROM Contact GROUP BY Account.Name");
    assert_eq!(p.column_keys(), vec!["Name", "expr0"]);
    // an aggregate without GROUP BY
    let p = ok("SELECT COUNT(Id), COUNT_DISTINCT(AccountId), AVG(Amount) FROM Opportunity");
    assert_eq!(p.column_keys(), vec!["expr0", "expr1", "expr2"]);
    assert!(p.group_by.is_empty());
}

#[test]
fn aggregate_rules() {
    let q = "SELECT Name, COUNT(Id) FROM Account";
    check_caret(
        &err(q),
        q,
        ErrorCode::MalformedQuery,
        "Name",
        "Field must be grouped or aggregated: Name",
    );
    let q = "SELECT Industry, COUNT(Id) FROM Account GROUP BY Industry ORDER BY Name";
    check_caret(
        &err(q),
        q,
        ErrorCode::MalformedQuery,
        "Name",
        "Ordered field must be grouped or aggregated: Name",
    );
    let q = "SELECT SUM(Name) FROM Account";
    check_caret(
        &err(q),
        q,
        ErrorCode::MalformedQuery,
        "Name",
        "field Name does not support aggregate operator SUM",
    );
    let q = "SELECT COUNT(IsDeleted) FROM Account";
    check_caret(
        &err(q),
        q,
        ErrorCode::MalformedQuery,
        "IsDeleted",
        "field IsDeleted does not support aggregate operator COUNT",
    );
    let q = "SELECT Industry FROM Account GROUP BY AnnualRevenue";
    check_caret(
        &err(q),
        q,
        ErrorCode::MalformedQuery,
        "AnnualRevenue",
        "field 'AnnualRevenue' can not be grouped in a query call",
    );
    let q = "SELECT Industry, COUNT(Id) FROM Account GROUP BY Industry HAVING Name = 'x'";
    check_caret(
        &err(q),
        q,
        ErrorCode::MalformedQuery,
        "Name =",
        "Field must be grouped or aggregated: Name",
    );
    assert_eq!(
        err("SELECT Id FROM Account WHERE COUNT(Id) > 1").code,
        ErrorCode::MalformedQuery
    );
    assert_eq!(
        err("SELECT Industry, (SELECT Id FROM Contacts) FROM Account GROUP BY Industry").code,
        ErrorCode::MalformedQuery
    );
    // HAVING on aggregates and grouped fields, ORDER BY an aggregate
    let p = ok("SELECT Industry, COUNT(Id) FROM Account GROUP BY Industry HAVING COUNT(Id) > 1 AND Industry != null ORDER BY COUNT(Id) DESC");
    let Some(Expr::And(parts)) = &p.having else {
        panic!("{:?}", p.having)
    };
    assert!(matches!(
        &parts[0],
        Expr::Compare {
            left: Operand::Aggregate(_),
            op: CompareOp::Gt,
            value: Value::Int(1)
        }
    ));
    assert!(matches!(&p.order_by[0].key, Operand::Aggregate(a) if a.func == AggFunc::Count));
    // toLabel of a grouped picklist
    let p = ok("SELECT toLabel(StageName), COUNT(Id) FROM Opportunity GROUP BY StageName");
    assert!(
        matches!(&p.columns[0], Column::Group { to_label: true, key, .. } if key == "StageName")
    );
}

#[test]
fn date_functions() {
    let f = filter_of("SELECT Id FROM Opportunity WHERE CALENDAR_YEAR(CloseDate) = 2024 AND HOUR_IN_DAY(convertTimezone(CreatedDate)) > 8 AND DAY_ONLY(CreatedDate) = TODAY");
    let Expr::And(parts) = f else { panic!() };
    assert!(matches!(
        &parts[0],
        Expr::Compare {
            left: Operand::Scalar(Scalar::Date {
                func: DateFunction::CalendarYear,
                ..
            }),
            value: Value::Int(2024),
            ..
        }
    ));
    assert!(matches!(
        &parts[1],
        Expr::Compare {
            left: Operand::Scalar(Scalar::Date {
                func: DateFunction::HourInDay,
                ..
            }),
            value: Value::Int(8),
            ..
        }
    ));
    assert_eq!(
        parts[2],
        Expr::And(vec![
            Expr::Compare {
                left: parts_left(&parts[2]),
                op: CompareOp::Ge,
                value: date("2024-05-15")
            },
            Expr::Compare {
                left: parts_left(&parts[2]),
                op: CompareOp::Lt,
                value: date("2024-05-16")
            },
        ])
    );
    // fiscal = calendar
    let p = ok("SELECT FISCAL_YEAR(CloseDate) fy, COUNT(Id) FROM Opportunity GROUP BY FISCAL_YEAR(CloseDate)");
    assert!(matches!(
        &p.columns[0],
        Column::Group {
            expr: Scalar::Date {
                func: DateFunction::CalendarYear,
                ..
            },
            ..
        }
    ));
    // wrong argument types
    let q = "SELECT Id FROM Opportunity WHERE DAY_ONLY(CloseDate) = TODAY";
    assert_eq!(err(q).code, ErrorCode::MalformedQuery);
    let q = "SELECT Id FROM Account WHERE CALENDAR_MONTH(Name) = 1";
    assert_eq!(err(q).code, ErrorCode::MalformedQuery);
    let q = "SELECT Id FROM Opportunity WHERE CALENDAR_YEAR(CloseDate) = '2024'";
    check_caret(&err(q), q, ErrorCode::InvalidField, "CALENDAR_YEAR", "value of filter criterion for field 'CloseDate' must be of type int and should not be enclosed in quotes");
    // a date function in SELECT must be grouped
    let q = "SELECT CALENDAR_YEAR(CloseDate) FROM Opportunity";
    assert_eq!(err(q).code, ErrorCode::MalformedQuery);
}

fn parts_left(e: &Expr) -> Operand {
    match e {
        Expr::And(xs) => match &xs[0] {
            Expr::Compare { left, .. } => left.clone(),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

// ------------------------------------------------------------------------------- filters

#[test]
fn literals_are_typed_for_their_field() {
    let f = filter_of("SELECT Id FROM Account WHERE NumberOfEmployees = 5 AND AnnualRevenue > 5 AND AnnualRevenue < 1500.5 AND AnnualRevenue >= USD5000 AND Name = 'Acme' AND IsDeleted = false");
    let Expr::And(parts) = f else { panic!() };
    let values: Vec<Value> = parts
        .iter()
        .map(|p| match p {
            Expr::Compare { value, .. } => value.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        values,
        vec![
            Value::Int(5),
            Value::Double(5.0),
            Value::Double(1500.5),
            Value::Double(5000.0),
            Value::Text("Acme".into()),
            Value::Bool(false),
        ]
    );
    // dates and date-times
    let f = filter_of("SELECT Id FROM Opportunity WHERE CloseDate = 2024-02-29 AND CreatedDate > 2024-01-01T10:00:00+02:00");
    let Expr::And(parts) = f else { panic!() };
    assert!(matches!(&parts[0], Expr::Compare { value, .. } if *value == date("2024-02-29")));
    assert!(
        matches!(&parts[1], Expr::Compare { value, .. } if *value == ms("2024-01-01T08:00:00Z"))
    );
}

#[test]
fn ids_are_parsed_and_typed() {
    let id = Id::new(
        KeyPrefix::parse("001").unwrap(),
        model::OrgMarker(*b"Abc"),
        7,
    );
    let q = format!(
        "SELECT Id FROM Contact WHERE AccountId = '{}' OR Id IN ('{}')",
        id.to_18(),
        id.as_str()
    );
    let f = filter_of(&q);
    let Expr::Or(parts) = f else { panic!() };
    assert!(matches!(&parts[0], Expr::Compare { value: Value::Id(x), .. } if *x == id));
    assert!(
        matches!(&parts[1], Expr::In { values, negated: false, .. } if values == &vec![Value::Id(id)])
    );
    let q = "SELECT Id FROM Account WHERE Id = 'xyz'";
    check_caret(
        &err(q),
        q,
        ErrorCode::InvalidQueryFilterOperator,
        "Id =",
        "invalid ID field: xyz",
    );
    let q = "SELECT Id FROM Contact WHERE AccountId IN ('001000000000001', 'nope')";
    check_caret(
        &err(q),
        q,
        ErrorCode::InvalidQueryFilterOperator,
        "AccountId",
        "invalid ID field: nope",
    );
    let q = "SELECT Id FROM Contact WHERE AccountId = 5";
    check_caret(&err(q), q, ErrorCode::InvalidField, "AccountId", "value of filter criterion for field 'AccountId' must be of type id and should be enclosed in quotes");
}

#[test]
fn type_mismatches_name_the_expected_type() {
    for (q, at, detail) in [
        ("SELECT Id FROM Account WHERE AnnualRevenue = '5'", "AnnualRevenue =", "value of filter criterion for field 'AnnualRevenue' must be of type double and should not be enclosed in quotes"),
        ("SELECT Id FROM Account WHERE Name = 5", "Name =", "value of filter criterion for field 'Name' must be of type string and should be enclosed in quotes"),
        ("SELECT Id FROM Account WHERE Name = TODAY", "Name =", "value of filter criterion for field 'Name' must be of type string and should be enclosed in quotes"),
        ("SELECT Id FROM Account WHERE Name > 2024-01-01", "Name >", "value of filter criterion for field 'Name' must be of type string and should be enclosed in quotes"),
        ("SELECT Id FROM Opportunity WHERE CloseDate = 2024-01-01T00:00:00Z", "CloseDate", "value of filter criterion for field 'CloseDate' must be of type date and should not be enclosed in quotes"),
        ("SELECT Id FROM Opportunity WHERE CloseDate = '2024-01-01'", "CloseDate", "value of filter criterion for field 'CloseDate' must be of type date and should not be enclosed in quotes"),
        ("SELECT Id FROM Account WHERE CreatedDate = 2024-01-01", "CreatedDate", "value of filter criterion for field 'CreatedDate' must be of type dateTime and should not be enclosed in quotes"),
        ("SELECT Id FROM Account WHERE IsDeleted = 'true'", "IsDeleted", "value of filter criterion for field 'IsDeleted' must be of type boolean and should not be enclosed in quotes"),
        ("SELECT Id FROM Account WHERE NumberOfEmployees IN (1, 'two')", "NumberOfEmployees", "value of filter criterion for field 'NumberOfEmployees' must be of type int and should not be enclosed in quotes"),
        ("SELECT Id FROM Account WHERE NumberOfEmployees = USD5", "NumberOfEmployees", "value of filter criterion for field 'NumberOfEmployees' must be of type int and should not be enclosed in quotes"),
    ] {
        check_caret(&err(q), q, ErrorCode::InvalidField, at, detail);
    }
}

#[test]
fn operator_rules() {
    let q = "SELECT Id FROM Account WHERE Id LIKE '001%'";
    check_caret(
        &err(q),
        q,
        ErrorCode::InvalidQueryFilterOperator,
        "Id LIKE",
        "invalid operator on id field",
    );
    let q = "SELECT Id FROM Account WHERE AnnualRevenue LIKE '1%'";
    check_caret(
        &err(q),
        q,
        ErrorCode::InvalidQueryFilterOperator,
        "AnnualRevenue",
        "invalid operator on double field",
    );
    let q = "SELECT Id FROM Account WHERE IsDeleted > false";
    check_caret(
        &err(q),
        q,
        ErrorCode::InvalidQueryFilterOperator,
        "IsDeleted",
        "invalid operator on boolean field",
    );
    let q = "SELECT Id FROM Account WHERE Industry INCLUDES ('Banking')";
    check_caret(
        &err(q),
        q,
        ErrorCode::InvalidQueryFilterOperator,
        "Industry",
        "includes or excludes operator only valid on multipicklist field",
    );
    let q = "SELECT Id FROM Account WHERE Description = 'x'";
    check_caret(
        &err(q),
        q,
        ErrorCode::InvalidField,
        "Description",
        "field 'Description' can not be filtered in a query call",
    );
    // LIKE keeps the pattern pieces
    let f = filter_of(r"SELECT Id FROM Account WHERE Name LIKE 'a\%b_%'");
    assert_eq!(
        f,
        Expr::Like {
            left: like_left(&f),
            pattern: vec![
                LikePiece::Literal("a%b".into()),
                LikePiece::AnyChar,
                LikePiece::AnyChars
            ]
        }
    );
}

fn like_left(e: &Expr) -> Operand {
    match e {
        Expr::Like { left, .. } => left.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn nulls_in_and_includes() {
    let f = filter_of(
        "SELECT Id FROM Account WHERE Industry = null AND Name != null AND AnnualRevenue > null",
    );
    let Expr::And(parts) = f else { panic!() };
    assert!(matches!(&parts[0], Expr::IsNull { negated: false, .. }));
    assert!(matches!(&parts[1], Expr::IsNull { negated: true, .. }));
    assert_eq!(parts[2], Expr::Const(false));
    let f = filter_of("SELECT Id FROM Account WHERE Industry IN ('Banking', null)");
    let Expr::Or(parts) = f else { panic!() };
    assert!(matches!(&parts[0], Expr::In { values, negated: false, .. } if values.len() == 1));
    assert!(matches!(&parts[1], Expr::IsNull { negated: false, .. }));
    let f = filter_of("SELECT Id FROM Account WHERE Industry NOT IN ('Banking', 'Energy')");
    assert!(matches!(f, Expr::In { negated: true, ref values, .. } if values.len() == 2));
    let f = filter_of("SELECT Id FROM Invoice__c WHERE Tags__c INCLUDES ('Red ; Green', 'Blue') AND Tags__c EXCLUDES ('Red')");
    let Expr::And(parts) = f else { panic!() };
    assert!(
        matches!(&parts[0], Expr::Includes { any_of, excludes: false, .. }
        if any_of == &vec![vec!["Red".to_string(), "Green".to_string()], vec!["Blue".to_string()]])
    );
    assert!(matches!(&parts[1], Expr::Includes { excludes: true, .. }));
}

#[test]
fn relative_date_literals_become_ranges() {
    let left = |e: &Expr| -> Operand {
        match e {
            Expr::Compare { left, .. } => left.clone(),
            Expr::And(xs) | Expr::Or(xs) => match &xs[xs.len() - 1] {
                Expr::Compare { left, .. } => left.clone(),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    };
    let cmp = |l: &Operand, op, value| Expr::Compare {
        left: l.clone(),
        op,
        value,
    };
    // Date field
    let f = filter_of("SELECT Id FROM Opportunity WHERE CloseDate = THIS_MONTH");
    let l = left(&f);
    assert_eq!(
        f,
        Expr::And(vec![
            cmp(&l, CompareOp::Ge, date("2024-05-01")),
            cmp(&l, CompareOp::Lt, date("2024-06-01"))
        ])
    );
    let f = filter_of("SELECT Id FROM Opportunity WHERE CloseDate != LAST_N_DAYS:3");
    assert_eq!(
        f,
        Expr::Or(vec![
            Expr::IsNull {
                left: l.clone(),
                negated: false
            },
            cmp(&l, CompareOp::Lt, date("2024-05-12")),
            cmp(&l, CompareOp::Ge, date("2024-05-16"))
        ])
    );
    for (op, expect) in [
        ("<", cmp(&l, CompareOp::Lt, date("2024-05-15"))),
        ("<=", cmp(&l, CompareOp::Lt, date("2024-05-16"))),
        (">", cmp(&l, CompareOp::Ge, date("2024-05-16"))),
        (">=", cmp(&l, CompareOp::Ge, date("2024-05-15"))),
    ] {
        let f = filter_of(&format!(
            "SELECT Id FROM Opportunity WHERE CloseDate {op} TODAY"
        ));
        assert_eq!(f, expect, "{op}");
    }
    // DateTime field: UTC midnight boundaries
    let f = filter_of("SELECT Id FROM Account WHERE CreatedDate = YESTERDAY");
    let l = left(&f);
    assert_eq!(
        f,
        Expr::And(vec![
            cmp(&l, CompareOp::Ge, ms("2024-05-14T00:00:00Z")),
            cmp(&l, CompareOp::Lt, ms("2024-05-15T00:00:00Z"))
        ])
    );
    // IN with literals: any of the ranges
    let f = filter_of("SELECT Id FROM Opportunity WHERE CloseDate IN (TODAY, 2024-01-01)");
    assert!(matches!(f, Expr::Or(ref xs) if xs.len() == 2));
    // huge n does not overflow
    ok("SELECT Id FROM Account WHERE CreatedDate > LAST_N_YEARS:2147483647 AND CreatedDate < NEXT_N_DAYS:2147483647");
}

#[test]
fn semi_and_anti_joins() {
    let f = filter_of("SELECT Id FROM Account WHERE Id IN (SELECT AccountId FROM Contact WHERE LastName LIKE 'S%') AND Id NOT IN (SELECT Account__c FROM Invoice__c)");
    let Expr::And(parts) = f else { panic!() };
    let Expr::SemiJoin {
        negated: false,
        query,
        ..
    } = &parts[0]
    else {
        panic!("{:?}", parts[0])
    };
    assert_eq!(query.object.name, "Contact");
    assert_eq!(query.field.def().name, "AccountId");
    assert!(query.filter.is_some());
    assert!(matches!(&parts[1], Expr::SemiJoin { negated: true, .. }));
    // reference on the left
    ok("SELECT Id FROM Contact WHERE AccountId IN (SELECT Id FROM Account WHERE Name = 'x')");
    let q = "SELECT Id FROM Account WHERE Id IN (SELECT Id FROM Contact)";
    check_caret(&err(q), q, ErrorCode::MalformedQuery, "Id FROM Contact", "The selected field 'Id' in the subquery and the left operand field in the where expression in the outer query 'Id' should point to the same object type");
    let q = "SELECT Id FROM Account WHERE Id IN (SELECT LastName FROM Contact)";
    assert_eq!(err(q).code, ErrorCode::MalformedQuery);
    let q = "SELECT Id FROM Account WHERE Name IN (SELECT AccountId FROM Contact)";
    assert_eq!(err(q).code, ErrorCode::MalformedQuery);
    let q = "SELECT Id FROM Account WHERE Id IN (SELECT AccountId FROM Contac)";
    check_caret(
        &err(q),
        q,
        ErrorCode::InvalidType,
        "Contac)",
        &unsupported_type("Contac"),
    );
}

#[test]
fn query_all_reaches_children_and_semi_joins() {
    let mut o = opts();
    o.include_deleted = true;
    let p = run("SELECT Id, (SELECT Id FROM Contacts) FROM Account WHERE Id IN (SELECT AccountId FROM Contact)", &FullAccess, &o).unwrap();
    assert!(p.include_deleted);
    let Column::Children { plan, .. } = &p.columns[1] else {
        panic!()
    };
    assert!(plan.include_deleted);
    let Some(Expr::SemiJoin { query, .. }) = &p.filter else {
        panic!()
    };
    assert!(query.include_deleted);
}

#[test]
fn parse_errors_are_malformed_with_caret() {
    let q = "SELECT Id FROMM Account";
    let e = err(q);
    assert_eq!(e.code, ErrorCode::MalformedQuery);
    assert!(
        e.message.starts_with("\nSELECT Id FROMM Account\n"),
        "{}",
        e.message
    );
    assert!(e.message.contains("ERROR at Row:1:Column:"));
}

#[test]
fn query_errors_convert_to_api_errors() {
    let e: model::ApiError = err("SELECT Idd FROM Account").into();
    assert_eq!(e.code, ErrorCode::InvalidField);
    assert!(e.message.contains("No such column 'Idd'"));
}
