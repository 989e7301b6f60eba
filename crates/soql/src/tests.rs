//! Table-driven tests of the SOQL parser: every clause, literal kind, escape, real client
//! query shapes, error messages with columns, hostile inputs and property tests.

use crate::ast::*;
use crate::{caret_message, line_col, parse, ErrorKind, ParseError, Span, MAX_DEPTH};

// ------------------------------------------------------------------------------- helpers

fn ok(input: &str) -> Query {
    match parse(input) {
        Ok(q) => q,
        Err(e) => panic!(
            "expected {input:?} to parse, got:{}",
            e.salesforce_message(input)
        ),
    }
}

/// Parses `input` and checks that the AST's `Debug` output contains every fragment.
fn check_ok(input: &str, fragments: &[&str]) {
    let dbg = format!("{:?}", ok(input));
    for f in fragments {
        assert!(dbg.contains(f), "{input:?}: AST lacks {f:?}\n{dbg}");
    }
}

fn err(input: &str) -> ParseError {
    match parse(input) {
        Ok(q) => panic!("expected {input:?} to fail, got {q:?}"),
        Err(e) => e,
    }
}

/// Checks the error message contains `fragment` and points at 1-based column `col` (row 1).
fn check_err(input: &str, fragment: &str, col: usize) {
    let e = err(input);
    assert_eq!(e.kind, ErrorKind::MalformedQuery);
    assert!(
        e.message.contains(fragment),
        "{input:?}: message {:?} lacks {fragment:?}",
        e.message
    );
    assert_eq!(
        line_col(input, e.span.start),
        (1, col),
        "{input:?}: {:?}",
        e.message
    );
}

/// Like [`check_err`] but the expected column is where `needle` first occurs in `input`.
fn check_err_at(input: &str, fragment: &str, needle: &str) {
    let at = input
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in {input:?}"));
    let (_, col) = line_col(input, at);
    check_err(input, fragment, col);
}

fn where_of(input: &str) -> Condition {
    ok(input).where_clause.expect("WHERE clause")
}

/// The value of `SELECT Id FROM Account WHERE F = <v>`.
fn value_of(v: &str) -> ValueKind {
    match where_of(&format!("SELECT Id FROM Account WHERE F = {v}")) {
        Condition::Compare(c) => c.value.kind,
        other => panic!("not a comparison: {other:?}"),
    }
}

/// The pattern of `SELECT Id FROM Account WHERE Name LIKE <p>`.
fn like_of(p: &str) -> Vec<LikePiece> {
    match where_of(&format!("SELECT Id FROM Account WHERE Name LIKE {p}")) {
        Condition::Like(l) => l.pattern.pieces,
        other => panic!("not a LIKE: {other:?}"),
    }
}

fn lit(s: &str) -> LikePiece {
    LikePiece::Literal(s.to_string())
}

fn names(path: &FieldPath) -> Vec<&str> {
    path.segments.iter().map(|s| s.name.as_str()).collect()
}

fn slice(input: &str, span: Span) -> &str {
    &input[span.start..span.end]
}

// ------------------------------------------------------------------------------- basics

#[test]
fn minimal_query_structure_and_spans() {
    let input = "SELECT Id, Name FROM Account";
    let q = ok(input);
    assert_eq!(q.select.len(), 2);
    let SelectItem::Field(p) = &q.select[1] else {
        panic!()
    };
    assert_eq!(names(p), ["Name"]);
    assert_eq!(slice(input, p.span), "Name");
    assert_eq!(q.from.object.name, "Account");
    assert_eq!(slice(input, q.from.object.span), "Account");
    assert_eq!(q.from.alias, None);
    assert_eq!(q.span, Span::new(0, input.len()));
    assert!(q.where_clause.is_none() && q.group_by.is_none() && q.order_by.is_empty());
    assert!(
        q.limit.is_none() && q.offset.is_none() && q.for_clause.is_none() && q.update.is_none()
    );
}

#[test]
fn keywords_case_insensitive_identifiers_keep_spelling() {
    let q = ok("select iD, aCCount.nAme from cOnTaCt where nAme = 'x' order by Name desc nulls last limit 5");
    let SelectItem::Field(p) = &q.select[1] else {
        panic!()
    };
    assert_eq!(names(p), ["aCCount", "nAme"]);
    assert_eq!(q.from.object.name, "cOnTaCt");
    assert_eq!(q.order_by[0].direction, Some(SortDirection::Desc));
    assert_eq!(q.order_by[0].nulls, Some(NullsOrder::Last));
    assert_eq!(q.limit.map(|l| l.value), Some(5));
}

#[test]
fn whitespace_and_newlines_are_free() {
    let input = "  SELECT\n\tId ,Name\r\n  FROM\n Account\nWHERE(Name='x')AND(Id!=null)  \n";
    let q = ok(input);
    assert_eq!(q.select.len(), 2);
    assert!(matches!(q.where_clause, Some(Condition::And { .. })));
    ok("SELECT Id,Name,(SELECT Id FROM Contacts)FROM Account WHERE Id IN('a','b')LIMIT 1");
}

#[test]
fn field_paths() {
    let cases: &[(&str, &[&str])] = &[
        ("Name", &["Name"]),
        ("Account.Name", &["Account", "Name"]),
        (
            "Account.Owner.Profile.Name",
            &["Account", "Owner", "Profile", "Name"],
        ),
        ("Foo__c", &["Foo__c"]),
        ("Foo__r.Bar__c", &["Foo__r", "Bar__c"]),
        ("ns__Foo__r.ns__Bar__c", &["ns__Foo__r", "ns__Bar__c"]),
        ("Group.Name", &["Group", "Name"]),
        ("Order.OrderNumber", &["Order", "OrderNumber"]),
        ("What.Type", &["What", "Type"]),
    ];
    for (path, expected) in cases {
        let input = format!("SELECT {path} FROM Thing");
        let q = ok(&input);
        let SelectItem::Field(p) = &q.select[0] else {
            panic!("{path}")
        };
        assert_eq!(&names(p), expected, "{path}");
        assert_eq!(p.dotted(), *path);
        assert_eq!(slice(&input, p.span), *path);
        for seg in &p.segments {
            assert_eq!(slice(&input, seg.span), seg.name);
        }
    }
}

#[test]
fn from_alias_forms() {
    let q = ok("SELECT c.Name, c.Account.Name FROM Contact c WHERE c.LastName = 'x'");
    assert_eq!(q.from.alias.as_ref().map(|a| a.name.as_str()), Some("c"));
    let SelectItem::Field(p) = &q.select[0] else {
        panic!()
    };
    assert_eq!(names(p), ["c", "Name"]);
    let q = ok("SELECT c.Name FROM Contact AS c");
    assert_eq!(q.from.alias.as_ref().map(|a| a.name.as_str()), Some("c"));
    let q = ok("SELECT Id FROM Account ORDER BY Name");
    assert!(q.from.alias.is_none());
    for clause in [
        "WHERE Id = null",
        "WITH SECURITY_ENFORCED",
        "GROUP BY Name",
        "ORDER BY Id",
        "LIMIT 1",
        "OFFSET 1",
        "FOR VIEW",
        "UPDATE TRACKING",
        "USING SCOPE Mine",
    ] {
        let q = ok(&format!("SELECT Name FROM Account {clause}"));
        assert!(q.from.alias.is_none(), "{clause}");
    }
    ok("SELECT Id FROM Group WHERE Type = 'Queue'");
    ok("SELECT Id FROM User");
    check_err("SELECT Id FROM Account AS", "<EOF>", 26);
    check_err("SELECT Id FROM Account AS WHERE", "'WHERE'", 27);
}

#[test]
fn from_qualified_child_relationship() {
    let q = ok("SELECT a.Name, (SELECT c.LastName FROM a.Contacts c) FROM Account a");
    let SelectItem::SubQuery(sub) = &q.select[1] else {
        panic!()
    };
    assert_eq!(
        sub.from.qualifier.as_ref().map(|i| i.name.as_str()),
        Some("a")
    );
    assert_eq!(sub.from.object.name, "Contacts");
    assert_eq!(sub.from.alias.as_ref().map(|i| i.name.as_str()), Some("c"));
    // only child subqueries may qualify
    check_err("SELECT Id FROM a.Account", "'.'", 17);
}

// ------------------------------------------------------------------------------- select items

#[test]
fn every_function_parses_with_alias() {
    for kind in FunctionKind::ALL {
        let name = kind.canonical_name();
        let arg = if kind == FunctionKind::Count {
            "Id"
        } else {
            "CreatedDate"
        };
        let input = format!("SELECT {name}({arg}) al FROM Account GROUP BY Name");
        let q = ok(&input);
        let SelectItem::Function { call, alias } = &q.select[0] else {
            panic!("{name}")
        };
        assert_eq!(call.kind, kind);
        assert_eq!(call.name.name, name);
        assert_eq!(slice(&input, call.span), format!("{name}({arg})"));
        assert_eq!(call.args.len(), 1);
        assert_eq!(alias.as_ref().map(|a| a.name.as_str()), Some("al"));
        // lower case works too
        let q = ok(&format!(
            "SELECT {}({arg}) FROM Account",
            name.to_lowercase()
        ));
        let SelectItem::Function { call, alias } = &q.select[0] else {
            panic!("{name}")
        };
        assert_eq!(call.kind, kind);
        assert!(alias.is_none());
    }
    assert!(FunctionKind::Sum.is_aggregate() && !FunctionKind::Sum.is_date_function());
    assert!(FunctionKind::DayOnly.is_date_function() && !FunctionKind::ToLabel.is_aggregate());
    assert_eq!(
        FunctionKind::from_name("count_distinct"),
        Some(FunctionKind::CountDistinct)
    );
    assert_eq!(FunctionKind::from_name("DISTANCE"), None);
}

#[test]
fn aggregates_with_aliases_group_by_having() {
    let input = "SELECT LeadSource, COUNT(Id) cnt, MAX(Amount) maxAmt, COUNT_DISTINCT(OwnerId) owners \
                 FROM Opportunity GROUP BY LeadSource HAVING COUNT(Id) > 1 AND MAX(Amount) >= 100.5 \
                 ORDER BY COUNT(Id) DESC LIMIT 10";
    let q = ok(input);
    let aliases: Vec<_> = q
        .select
        .iter()
        .filter_map(|i| match i {
            SelectItem::Function { alias: Some(a), .. } => Some(a.name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(aliases, ["cnt", "maxAmt", "owners"]);
    let g = q.group_by.as_ref().unwrap();
    assert_eq!(g.kind, GroupByKind::Plain);
    assert_eq!(g.fields.len(), 1);
    let Some(Condition::And { operands, .. }) = &q.having else {
        panic!()
    };
    let Condition::Compare(c) = &operands[1] else {
        panic!()
    };
    assert!(matches!(&c.left, FieldExpr::Function(f) if f.kind == FunctionKind::Max));
    assert_eq!(c.op, CompareOp::Ge);
    assert_eq!(c.value.kind, ValueKind::Decimal("100.5".into()));
    assert!(matches!(&q.order_by[0].expr, FieldExpr::Function(f) if f.kind == FunctionKind::Count));
}

#[test]
fn count_forms() {
    let q = ok("SELECT COUNT() FROM Contact");
    let SelectItem::Function { call, alias } = &q.select[0] else {
        panic!()
    };
    assert_eq!(call.kind, FunctionKind::Count);
    assert!(call.args.is_empty() && alias.is_none());
    ok("SELECT COUNT() FROM Contact WHERE LastName LIKE 'a%' LIMIT 5");
    ok("select count() from Contact");
    check_err(
        "SELECT COUNT(), Id FROM Account",
        "COUNT() must be the only",
        8,
    );
    check_err(
        "SELECT Id, COUNT() FROM Account",
        "COUNT() must be the only",
        12,
    );
    check_err(
        "SELECT COUNT(Id, Name) FROM Account",
        "unexpected token: ','",
        16,
    );
    // COUNT(Id) may be combined with other items
    ok("SELECT COUNT(Id), Name FROM Account GROUP BY Name");
}

#[test]
fn function_arity_and_unknown_functions() {
    check_err("SELECT SUM() FROM Opportunity", "unexpected token: ')'", 12);
    check_err(
        "SELECT SUM(Amount, Id) FROM Opportunity",
        "unexpected token: ','",
        18,
    );
    check_err("SELECT Foo(Id) FROM Account", "unknown function: 'Foo'", 8);
    check_err(
        "SELECT Id FROM Account WHERE DISTANCE(Loc__c, GEOLOCATION(1,2), 'mi') < 20",
        "unknown function: 'DISTANCE'",
        30,
    );
    check_err("SELECT SUM(Amount FROM Opportunity", "'FROM'", 19);
    check_err("SELECT SUM(Amount) AS total FROM Opportunity", "'AS'", 20);
}

#[test]
fn nested_functions() {
    let input = "SELECT HOUR_IN_DAY(convertTimezone(CreatedDate)) h, SUM(Amount) FROM Opportunity \
                 GROUP BY HOUR_IN_DAY(convertTimezone(CreatedDate))";
    let q = ok(input);
    let SelectItem::Function { call, alias } = &q.select[0] else {
        panic!()
    };
    assert_eq!(call.kind, FunctionKind::HourInDay);
    assert_eq!(alias.as_ref().unwrap().name, "h");
    let FieldExpr::Function(inner) = &call.args[0] else {
        panic!()
    };
    assert_eq!(inner.kind, FunctionKind::ConvertTimezone);
    assert_eq!(inner.name.name, "convertTimezone");
    check_ok(
        "SELECT FORMAT(MIN(CloseDate)) m, toLabel(StageName), convertCurrency(Amount) FROM Opportunity",
        &["Format", "Min", "ToLabel", "ConvertCurrency", "name: \"StageName\""],
    );
    ok("SELECT Id FROM Opportunity WHERE CALENDAR_YEAR(CloseDate) = 2024 AND DAY_ONLY(CreatedDate) > 2024-01-01");
}

#[test]
fn plain_field_may_not_take_alias() {
    check_err("SELECT Name n FROM Account", "unexpected token: 'n'", 13);
    check_err(
        "SELECT Id, Account.Name an FROM Contact",
        "unexpected token: 'an'",
        25,
    );
}

#[test]
fn fields_function() {
    let q = ok("SELECT FIELDS(ALL) FROM Account LIMIT 200");
    assert!(matches!(&q.select[0], SelectItem::Fields(f) if f.kind == FieldsKind::All));
    let q = ok("SELECT fields(standard) FROM Account");
    assert!(matches!(&q.select[0], SelectItem::Fields(f) if f.kind == FieldsKind::Standard));
    let q = ok("SELECT Id, FIELDS(CUSTOM) FROM Account LIMIT 10");
    assert!(matches!(&q.select[1], SelectItem::Fields(f) if f.kind == FieldsKind::Custom));
    check_err(
        "SELECT FIELDS(ALL) FROM Account",
        "must have a LIMIT of at most 200",
        8,
    );
    check_err(
        "SELECT FIELDS(CUSTOM) FROM Account LIMIT 201",
        "must have a LIMIT of at most 200",
        8,
    );
    check_err("SELECT FIELDS(SOME) FROM Account", "'SOME'", 15);
    check_err("SELECT FIELDS() FROM Account", "')'", 15);
    // a field merely called Fields is still a field
    let q = ok("SELECT Fields FROM Thing__c");
    assert!(matches!(&q.select[0], SelectItem::Field(_)));
}

#[test]
fn child_subqueries() {
    let input = "SELECT Id, Name, (SELECT Id, LastName FROM Contacts WHERE LastName != null \
                 ORDER BY LastName LIMIT 5 OFFSET 1) FROM Account";
    let q = ok(input);
    let SelectItem::SubQuery(sub) = &q.select[2] else {
        panic!()
    };
    assert_eq!(sub.from.object.name, "Contacts");
    assert_eq!(sub.select.len(), 2);
    assert_eq!(sub.limit.map(|l| l.value), Some(5));
    assert_eq!(sub.offset.map(|l| l.value), Some(1));
    assert!(slice(input, sub.span).starts_with("SELECT Id, LastName"));
    assert!(slice(input, sub.span).ends_with("OFFSET 1"));
    assert_eq!(q.from.object.name, "Account");
    // subquery with semi-join in its WHERE is fine
    ok("SELECT Id, (SELECT Id FROM Contacts WHERE Id IN (SELECT WhoId FROM Task)) FROM Account");
}

#[test]
fn nested_child_subquery_rejected() {
    check_err(
        "SELECT Id, (SELECT Id, (SELECT Id FROM Cases) FROM Contacts) FROM Account",
        "nested relationship subqueries",
        24,
    );
    check_err(
        "SELECT Id, (SELECT Id FROM Contacts FROM Account",
        "'FROM'",
        37,
    );
}

#[test]
fn typeof_clause() {
    let input =
        "SELECT Id, TYPEOF What WHEN Account THEN Name, Phone WHEN Opportunity THEN Amount \
                 ELSE Name END FROM Event";
    let q = ok(input);
    let SelectItem::TypeOf(t) = &q.select[1] else {
        panic!()
    };
    assert_eq!(t.field.name, "What");
    assert_eq!(t.whens.len(), 2);
    assert_eq!(t.whens[0].object.name, "Account");
    assert_eq!(t.whens[0].fields.len(), 2);
    assert_eq!(t.whens[1].object.name, "Opportunity");
    assert_eq!(t.else_fields.as_ref().map(|f| f.len()), Some(1));
    assert!(slice(input, t.span).starts_with("TYPEOF") && slice(input, t.span).ends_with("END"));
    let q = ok("SELECT typeof Owner when User then Username, Profile.Name end FROM Case");
    let SelectItem::TypeOf(t) = &q.select[0] else {
        panic!()
    };
    assert!(t.else_fields.is_none());
    assert_eq!(names(&t.whens[0].fields[1]), ["Profile", "Name"]);
    check_err(
        "SELECT TYPEOF What WHEN Account THEN Name FROM Event",
        "'FROM'",
        43,
    );
    check_err("SELECT TYPEOF What ELSE Name END FROM Event", "'ELSE'", 20);
    check_err(
        "SELECT TYPEOF What WHEN Account Name END FROM Event",
        "'Name'",
        33,
    );
}

// ------------------------------------------------------------------------------- conditions

#[test]
fn comparison_operators() {
    let cases = [
        ("=", CompareOp::Eq),
        ("!=", CompareOp::Ne),
        ("<>", CompareOp::Ne),
        ("<", CompareOp::Lt),
        ("<=", CompareOp::Le),
        (">", CompareOp::Gt),
        (">=", CompareOp::Ge),
    ];
    for (src, op) in cases {
        let input = format!("SELECT Id FROM Account WHERE NumberOfEmployees {src} 10");
        let Condition::Compare(c) = where_of(&input) else {
            panic!("{src}")
        };
        assert_eq!(c.op, op, "{src}");
        assert_eq!(slice(&input, c.op_span), src);
        assert_eq!(c.value.kind, ValueKind::Integer(10));
        assert_eq!(slice(&input, c.span), format!("NumberOfEmployees {src} 10"));
    }
}

#[test]
fn and_or_not_parentheses() {
    let c = where_of("SELECT Id FROM Account WHERE a = 1 AND b = 2 AND c = 3");
    assert!(matches!(&c, Condition::And { operands, .. } if operands.len() == 3));
    let c = where_of("SELECT Id FROM Account WHERE a = 1 OR b = 2 or c = 3");
    assert!(matches!(&c, Condition::Or { operands, .. } if operands.len() == 3));
    let c = where_of("SELECT Id FROM Account WHERE a = 1 AND (b = 2 OR c = 3)");
    let Condition::And { operands, .. } = &c else {
        panic!()
    };
    assert!(matches!(&operands[1], Condition::Or { .. }));
    let c = where_of("SELECT Id FROM Account WHERE (a = 1 AND b = 2) OR c = 3");
    let Condition::Or { operands, .. } = &c else {
        panic!()
    };
    assert!(matches!(&operands[0], Condition::And { .. }));
    let c = where_of("SELECT Id FROM Account WHERE NOT a = 1 AND b = 2");
    let Condition::And { operands, .. } = &c else {
        panic!()
    };
    assert!(matches!(&operands[0], Condition::Not { .. }));
    let c = where_of("SELECT Id FROM Account WHERE NOT (a = 1 OR b = 2)");
    let Condition::Not { operand, .. } = &c else {
        panic!()
    };
    assert!(matches!(**operand, Condition::Or { .. }));
    let c = where_of("SELECT Id FROM Account WHERE ((((a = 1))))");
    assert!(matches!(c, Condition::Compare(_)));
    // jsforce's $nlike shape
    let c = where_of("SELECT Id FROM Account WHERE (NOT Name LIKE 'x%')");
    let Condition::Not { operand, .. } = &c else {
        panic!()
    };
    assert!(matches!(**operand, Condition::Like(_)));
}

#[test]
fn mixing_and_or_needs_parentheses() {
    check_err(
        "SELECT Id FROM Account WHERE a = 1 AND b = 2 OR c = 3",
        "unexpected token: 'OR'",
        46,
    );
    check_err(
        "SELECT Id FROM Account WHERE a = 1 OR b = 2 AND c = 3",
        "unexpected token: 'AND'",
        45,
    );
    check_err_at(
        "SELECT Id FROM Account WHERE (a = 1 OR b = 2 and c = 3) AND d = 4",
        "unexpected token: 'and'",
        "and",
    );
    check_err_at("SELECT Id FROM Account HAVING x = 1", "'HAVING'", "HAVING");
}

#[test]
fn like_patterns() {
    assert_eq!(like_of("'abc'"), vec![lit("abc")]);
    assert_eq!(like_of("'y%'"), vec![lit("y"), LikePiece::AnyChars]);
    assert_eq!(
        like_of("'%a_b%'"),
        vec![
            LikePiece::AnyChars,
            lit("a"),
            LikePiece::AnyChar,
            lit("b"),
            LikePiece::AnyChars
        ]
    );
    assert_eq!(like_of(r"'50\%'"), vec![lit("50%")]);
    assert_eq!(like_of(r"'a\_b%'"), vec![lit("a_b"), LikePiece::AnyChars]);
    assert_eq!(like_of(r"'\\%'"), vec![lit("\\"), LikePiece::AnyChars]);
    assert_eq!(like_of(r"'it\'s%'"), vec![lit("it's"), LikePiece::AnyChars]);
    assert_eq!(like_of("''"), vec![]);
    assert_eq!(
        like_of("'%%'"),
        vec![LikePiece::AnyChars, LikePiece::AnyChars]
    );
    assert_eq!(like_of(r"'é\%ü_'"), vec![lit("é%ü"), LikePiece::AnyChar]);
    let input = "SELECT Id FROM Account WHERE Name LIKE 'x%'";
    let Condition::Like(l) = where_of(input) else {
        panic!()
    };
    assert_eq!(slice(input, l.pattern_span), "'x%'");
    check_err(
        "SELECT Id FROM Account WHERE Name LIKE 5",
        "unexpected token: '5'",
        40,
    );
    check_err("SELECT Id FROM Account WHERE Name LIKE null", "'null'", 40);
    check_err(
        "SELECT Id FROM Account WHERE Name NOT LIKE 'x'",
        "'LIKE'",
        39,
    );
}

#[test]
fn like_escapes_only_in_like() {
    check_err(r"SELECT Id FROM Account WHERE Name = 'a\%'", r"'\%'", 39);
    check_err(
        r"SELECT Id FROM Account WHERE Name IN ('a', 'b\_c')",
        r"'\_'",
        46,
    );
}

#[test]
fn in_lists() {
    let input =
        "SELECT Id FROM Account WHERE Industry IN ('a', 'b') AND Id NOT IN ('001000000000001')";
    let Condition::And { operands, .. } = where_of(input) else {
        panic!()
    };
    let Condition::InList(a) = &operands[0] else {
        panic!()
    };
    assert!(!a.negated);
    assert_eq!(a.values.len(), 2);
    assert_eq!(a.values[1].kind, ValueKind::String("b".into()));
    assert_eq!(slice(input, a.values[1].span), "'b'");
    let Condition::InList(b) = &operands[1] else {
        panic!()
    };
    assert!(b.negated);
    let Condition::InList(c) =
        where_of("SELECT Id FROM Account WHERE N IN (1, 2.5, null, TRUE, 2024-01-01)")
    else {
        panic!()
    };
    assert_eq!(c.values.len(), 5);
    check_err(
        "SELECT Id FROM Account WHERE Id IN ()",
        "unexpected token: ')'",
        37,
    );
    check_err("SELECT Id FROM Account WHERE Id IN ('a',)", "')'", 41);
    check_err(
        "SELECT Id FROM Account WHERE Id IN 'a'",
        "unexpected token: 'a'",
        36,
    );
    check_err(
        "SELECT Id FROM Account WHERE Name IN ('a', 'b'",
        "<EOF>",
        47,
    );
}

#[test]
fn semi_and_anti_joins() {
    let input =
        "SELECT Id FROM Account WHERE Id IN (SELECT AccountId FROM Contact WHERE LastName = 'x')";
    let Condition::SemiJoin(s) = where_of(input) else {
        panic!()
    };
    assert!(!s.negated);
    assert_eq!(s.query.from.object.name, "Contact");
    let SelectItem::Field(p) = &s.query.select[0] else {
        panic!()
    };
    assert_eq!(names(p), ["AccountId"]);
    assert_eq!(slice(input, s.span), &input[29..]);
    let Condition::SemiJoin(s) =
        where_of("SELECT Id FROM Account WHERE Id NOT IN (SELECT AccountId FROM Opportunity WHERE IsClosed = false)")
    else {
        panic!()
    };
    assert!(s.negated);
    // two semi-joins in one WHERE, and one in a child subquery's outer query
    ok("SELECT Id FROM Contact WHERE AccountId IN (SELECT Id FROM Account) AND Id NOT IN (SELECT WhoId FROM Task)");
}

#[test]
fn semi_join_restrictions() {
    check_err_at(
        "SELECT Id FROM Account WHERE Id IN (SELECT AccountId FROM Contact WHERE Id IN (SELECT ContactId FROM Case))",
        "Nesting of semi join sub-selects is not supported",
        "SELECT ContactId",
    );
    check_err(
        "SELECT Id FROM Account WHERE Id IN (SELECT AccountId, Id FROM Contact)",
        "exactly one field",
        55,
    );
    check_err_at(
        "SELECT Id FROM Account WHERE Id IN (SELECT COUNT() FROM Contact)",
        "exactly one field",
        "COUNT",
    );
    check_err_at(
        "SELECT Id FROM Account WHERE Id IN (SELECT AccountId, (SELECT Id FROM Cases) FROM Contact)",
        "nested relationship subqueries",
        "(SELECT Id FROM Cases",
    );
    check_err_at(
        "SELECT Name, COUNT(Id) FROM Account GROUP BY Name HAVING Name IN (SELECT Name FROM Lead)",
        "not allowed in HAVING",
        "SELECT Name FROM Lead",
    );
}

#[test]
fn includes_excludes() {
    let input =
        "SELECT Id FROM Account WHERE Tags__c INCLUDES ('a;b', 'c') OR Tags__c EXCLUDES ('d')";
    let Condition::Or { operands, .. } = where_of(input) else {
        panic!()
    };
    let Condition::Includes(i) = &operands[0] else {
        panic!()
    };
    assert!(!i.excludes);
    assert_eq!(i.values[0].kind, ValueKind::String("a;b".into()));
    let Condition::Includes(e) = &operands[1] else {
        panic!()
    };
    assert!(e.excludes);
    check_err(
        "SELECT Id FROM Account WHERE Tags__c INCLUDES (1)",
        "'1'",
        48,
    );
    check_err(
        "SELECT Id FROM Account WHERE Tags__c INCLUDES 'a'",
        "unexpected token: 'a'",
        47,
    );
}

#[test]
fn left_side_must_be_a_field() {
    check_err(
        "SELECT Id FROM Account WHERE 'x' = Name",
        "unexpected token: 'x'",
        30,
    );
    check_err(
        "SELECT Id FROM Account WHERE 1 = 1",
        "unexpected token: '1'",
        30,
    );
    check_err("SELECT Id FROM Account WHERE Name", "<EOF>", 34);
    check_err("SELECT Id FROM Account WHERE Name Name2", "'Name2'", 35);
    check_err("SELECT Id FROM Account WHERE LIMIT = 5", "'LIMIT'", 30);
    check_err("SELECT Id FROM Account WHERE Name = Other", "'Other'", 37);
}

// ------------------------------------------------------------------------------- values

#[test]
fn string_literals_and_escapes() {
    let cases = [
        ("'plain'", "plain"),
        ("''", ""),
        (r"'O\'Brien'", "O'Brien"),
        (r"'a\nb\Nc'", "a\nb\nc"),
        (r"'\r\R\t\T'", "\r\r\t\t"),
        (r"'\b\B\f\F'", "\u{8}\u{8}\u{c}\u{c}"),
        (r#"'say \"hi\"'"#, "say \"hi\""),
        (r"'back\\slash'", "back\\slash"),
        (r"'\u00e9t\u00E9'", "été"),
        (r"'\uD83D\uDE00'", "😀"),
        ("'ünïcødé 日本'", "ünïcødé 日本"),
        ("'multi\nline'", "multi\nline"),
        ("'%_'", "%_"),
        ("'a\"b'", "a\"b"),
    ];
    for (src, decoded) in cases {
        assert_eq!(value_of(src), ValueKind::String(decoded.into()), "{src}");
    }
}

#[test]
fn bad_string_literals() {
    check_err(
        "SELECT Id FROM Account WHERE Name = 'abc",
        "unterminated string literal",
        37,
    );
    check_err(
        r"SELECT Id FROM Account WHERE Name = 'a\qb'",
        r"invalid escape sequence '\q'",
        39,
    );
    check_err(
        r"SELECT Id FROM Account WHERE Name = '\u12G4'",
        "invalid unicode escape",
        38,
    );
    check_err(
        r"SELECT Id FROM Account WHERE Name = '\u'",
        "invalid unicode escape",
        38,
    );
    check_err(
        r"SELECT Id FROM Account WHERE Name = '\uD800'",
        "invalid unicode escape",
        38,
    );
    check_err(
        r"SELECT Id FROM Account WHERE Name = 'x\",
        "unterminated",
        37,
    );
    check_err(
        "SELECT Id FROM Account WHERE Name = \"x\"",
        "unexpected token: '\"'",
        37,
    );
}

#[test]
fn numbers() {
    let cases = [
        ("0", ValueKind::Integer(0)),
        ("42", ValueKind::Integer(42)),
        ("-5", ValueKind::Integer(-5)),
        ("+7", ValueKind::Integer(7)),
        ("2.5", ValueKind::Decimal("2.5".into())),
        ("+2.5", ValueKind::Decimal("2.5".into())),
        ("-0.001", ValueKind::Decimal("-0.001".into())),
        ("9223372036854775807", ValueKind::Integer(i64::MAX)),
        ("-9223372036854775808", ValueKind::Integer(i64::MIN)),
        (
            "9223372036854775808",
            ValueKind::Decimal("9223372036854775808".into()),
        ),
        (
            "123456789012345678901234567890",
            ValueKind::Decimal("123456789012345678901234567890".into()),
        ),
    ];
    for (src, expected) in cases {
        assert_eq!(value_of(src), expected, "{src}");
    }
    check_err(
        "SELECT Id FROM Account WHERE Amount = 1e3",
        "unexpected token: '1e3'",
        39,
    );
    check_err("SELECT Id FROM Account WHERE Amount = 5.", "'5.'", 39);
    check_err("SELECT Id FROM Account WHERE Amount = .5", "'.'", 39);
    check_err("SELECT Id FROM Account WHERE Amount = - 5", "'-'", 39);
    check_err("SELECT Id FROM Account WHERE Amount = 0x10", "'0x10'", 39);
}

#[test]
fn booleans_and_null() {
    for (src, expected) in [
        ("TRUE", ValueKind::Boolean(true)),
        ("true", ValueKind::Boolean(true)),
        ("False", ValueKind::Boolean(false)),
        ("NULL", ValueKind::Null),
        ("null", ValueKind::Null),
    ] {
        assert_eq!(value_of(src), expected, "{src}");
    }
    let Condition::Compare(c) = where_of("SELECT Id FROM Account WHERE Name != null") else {
        panic!()
    };
    assert_eq!((c.op, c.value.kind), (CompareOp::Ne, ValueKind::Null));
}

#[test]
fn dates_and_datetimes() {
    assert_eq!(
        value_of("2024-02-29"),
        ValueKind::Date(Date {
            year: 2024,
            month: 2,
            day: 29
        })
    );
    let d = Date {
        year: 2024,
        month: 1,
        day: 1,
    };
    let dt = |hour, minute, second, millis, offset_minutes| {
        ValueKind::DateTime(DateTime {
            date: d,
            hour,
            minute,
            second,
            millis,
            offset_minutes,
        })
    };
    let cases = [
        ("2024-01-01T00:00:00Z", dt(0, 0, 0, 0, 0)),
        ("2024-01-01T00:00:00+00:00", dt(0, 0, 0, 0, 0)),
        ("2024-01-01T23:59:59-08:00", dt(23, 59, 59, 0, -480)),
        ("2024-01-01T12:34:56.789+05:30", dt(12, 34, 56, 789, 330)),
        ("2024-01-01T12:34:56.000Z", dt(12, 34, 56, 0, 0)),
    ];
    for (src, expected) in cases {
        assert_eq!(value_of(src), expected, "{src}");
    }
    let ValueKind::DateTime(x) = value_of("2005-10-08T01:02:03Z") else {
        panic!()
    };
    assert_eq!(x.to_unix_millis(), 1_128_733_323_000);
    let ValueKind::DateTime(y) = value_of("2005-10-08T03:02:03+02:00") else {
        panic!()
    };
    assert_eq!(y.to_unix_millis(), x.to_unix_millis());
    check_err(
        "SELECT Id FROM Account WHERE CreatedDate > 2024-13-01",
        "invalid date",
        44,
    );
    check_err(
        "SELECT Id FROM Account WHERE CreatedDate > 2023-02-29",
        "invalid date",
        44,
    );
    check_err(
        "SELECT Id FROM Account WHERE CreatedDate > 2024-01-01T00:00:00",
        "invalid dateTime",
        44,
    );
    check_err(
        "SELECT Id FROM Account WHERE CreatedDate > 2024-01-01T25:00:00Z",
        "invalid dateTime",
        44,
    );
    check_err(
        "SELECT Id FROM Account WHERE CreatedDate > '2024-01-01'x",
        "'x'",
        56,
    );
}

#[test]
fn every_fixed_date_literal() {
    let cases = [
        ("YESTERDAY", DateLiteral::Yesterday),
        ("TODAY", DateLiteral::Today),
        ("TOMORROW", DateLiteral::Tomorrow),
        ("LAST_WEEK", DateLiteral::LastWeek),
        ("THIS_WEEK", DateLiteral::ThisWeek),
        ("NEXT_WEEK", DateLiteral::NextWeek),
        ("LAST_MONTH", DateLiteral::LastMonth),
        ("THIS_MONTH", DateLiteral::ThisMonth),
        ("NEXT_MONTH", DateLiteral::NextMonth),
        ("LAST_90_DAYS", DateLiteral::Last90Days),
        ("NEXT_90_DAYS", DateLiteral::Next90Days),
        ("THIS_QUARTER", DateLiteral::ThisQuarter),
        ("LAST_QUARTER", DateLiteral::LastQuarter),
        ("NEXT_QUARTER", DateLiteral::NextQuarter),
        ("THIS_YEAR", DateLiteral::ThisYear),
        ("LAST_YEAR", DateLiteral::LastYear),
        ("NEXT_YEAR", DateLiteral::NextYear),
        ("THIS_FISCAL_QUARTER", DateLiteral::ThisFiscalQuarter),
        ("LAST_FISCAL_QUARTER", DateLiteral::LastFiscalQuarter),
        ("NEXT_FISCAL_QUARTER", DateLiteral::NextFiscalQuarter),
        ("THIS_FISCAL_YEAR", DateLiteral::ThisFiscalYear),
        ("LAST_FISCAL_YEAR", DateLiteral::LastFiscalYear),
        ("NEXT_FISCAL_YEAR", DateLiteral::NextFiscalYear),
    ];
    for (src, expected) in cases {
        assert_eq!(value_of(src), ValueKind::DateLiteral(expected), "{src}");
        assert_eq!(
            value_of(&src.to_lowercase()),
            ValueKind::DateLiteral(expected),
            "{src}"
        );
        assert_eq!(expected.keyword(), (src, None));
        assert_eq!(expected.n(), None);
    }
}

#[test]
fn every_parameterised_date_literal() {
    type Ctor = fn(u32) -> DateLiteral;
    let cases: [(&str, Ctor); 21] = [
        ("LAST_N_DAYS", DateLiteral::LastNDays),
        ("NEXT_N_DAYS", DateLiteral::NextNDays),
        ("N_DAYS_AGO", DateLiteral::NDaysAgo),
        ("LAST_N_WEEKS", DateLiteral::LastNWeeks),
        ("NEXT_N_WEEKS", DateLiteral::NextNWeeks),
        ("N_WEEKS_AGO", DateLiteral::NWeeksAgo),
        ("LAST_N_MONTHS", DateLiteral::LastNMonths),
        ("NEXT_N_MONTHS", DateLiteral::NextNMonths),
        ("N_MONTHS_AGO", DateLiteral::NMonthsAgo),
        ("LAST_N_QUARTERS", DateLiteral::LastNQuarters),
        ("NEXT_N_QUARTERS", DateLiteral::NextNQuarters),
        ("N_QUARTERS_AGO", DateLiteral::NQuartersAgo),
        ("LAST_N_YEARS", DateLiteral::LastNYears),
        ("NEXT_N_YEARS", DateLiteral::NextNYears),
        ("N_YEARS_AGO", DateLiteral::NYearsAgo),
        ("LAST_N_FISCAL_QUARTERS", DateLiteral::LastNFiscalQuarters),
        ("NEXT_N_FISCAL_QUARTERS", DateLiteral::NextNFiscalQuarters),
        ("N_FISCAL_QUARTERS_AGO", DateLiteral::NFiscalQuartersAgo),
        ("LAST_N_FISCAL_YEARS", DateLiteral::LastNFiscalYears),
        ("NEXT_N_FISCAL_YEARS", DateLiteral::NextNFiscalYears),
        ("N_FISCAL_YEARS_AGO", DateLiteral::NFiscalYearsAgo),
    ];
    for (name, ctor) in cases {
        assert_eq!(
            value_of(&format!("{name}:30")),
            ValueKind::DateLiteral(ctor(30)),
            "{name}"
        );
        assert_eq!(
            value_of(&format!("{}:0", name.to_lowercase())),
            ValueKind::DateLiteral(ctor(0))
        );
        assert_eq!(ctor(7).keyword(), (name, Some(7)));
        assert_eq!(ctor(7).n(), Some(7));
    }
    let input = "SELECT Id FROM Account WHERE CreatedDate = LAST_N_DAYS:365";
    let Condition::Compare(c) = where_of(input) else {
        panic!()
    };
    assert_eq!(slice(input, c.value.span), "LAST_N_DAYS:365");
    check_err(
        "SELECT Id FROM Account WHERE CreatedDate = LAST_N_DAYS",
        "<EOF>",
        55,
    );
    check_err(
        "SELECT Id FROM Account WHERE CreatedDate = LAST_N_DAYS:abc",
        "'abc'",
        56,
    );
    check_err(
        "SELECT Id FROM Account WHERE CreatedDate = LAST_N_DAYS:-1",
        "'-1'",
        56,
    );
    check_err(
        "SELECT Id FROM Account WHERE CreatedDate = LAST_N_DAYS:1.5",
        "'1.5'",
        56,
    );
    check_err(
        "SELECT Id FROM Account WHERE CreatedDate = LAST_N_DAYS:99999999999",
        "between 0 and",
        56,
    );
    check_err(
        "SELECT Id FROM Account WHERE CreatedDate = TODAY:5",
        "':'",
        49,
    );
    check_err(
        "SELECT Id FROM Account WHERE CreatedDate = LAST_N_DAYZ:5",
        "'LAST_N_DAYZ'",
        44,
    );
}

#[test]
fn date_literals_in_lists() {
    let Condition::InList(l) = where_of(
        "SELECT Id FROM Opportunity WHERE CloseDate IN (TODAY, LAST_N_DAYS:7, 2024-01-01)",
    ) else {
        panic!()
    };
    assert_eq!(
        l.values[1].kind,
        ValueKind::DateLiteral(DateLiteral::LastNDays(7))
    );
}

#[test]
fn currency_literals() {
    assert_eq!(
        value_of("USD5000"),
        ValueKind::Currency {
            code: "USD".into(),
            amount: "5000".into()
        }
    );
    assert_eq!(
        value_of("EUR12.50"),
        ValueKind::Currency {
            code: "EUR".into(),
            amount: "12.50".into()
        }
    );
    assert_eq!(
        value_of("jpy100"),
        ValueKind::Currency {
            code: "jpy".into(),
            amount: "100".into()
        }
    );
    check_err(
        "SELECT Id FROM Opportunity WHERE Amount > US5000",
        "'US5000'",
        43,
    );
}

#[test]
fn bind_variables_rejected() {
    check_err(
        "SELECT Id FROM Account WHERE Name = :name",
        "unexpected token: ':'",
        37,
    );
    check_err("SELECT Id FROM Account WHERE Id IN :ids", "':'", 36);
    check_err("SELECT Id FROM Account LIMIT :lim", "':'", 30);
}

// ------------------------------------------------------------------------------- clauses

#[test]
fn using_scope() {
    let q = ok("SELECT Id FROM Account USING SCOPE Mine WHERE Name != null");
    assert_eq!(
        q.using_scope.as_ref().map(|s| s.name.as_str()),
        Some("Mine")
    );
    assert!(q.where_clause.is_some());
    ok("SELECT Id FROM Account a USING SCOPE mine_and_my_groups");
    check_err("SELECT Id FROM Account USING SCOPE", "<EOF>", 35);
    check_err("SELECT Id FROM Account USING Mine", "'Mine'", 30);
}

#[test]
fn with_clauses() {
    let cases = [
        ("WITH SECURITY_ENFORCED", WithKind::SecurityEnforced),
        ("with user_mode", WithKind::UserMode),
        ("WITH SYSTEM_MODE", WithKind::SystemMode),
    ];
    for (src, kind) in cases {
        let q = ok(&format!(
            "SELECT Id FROM Account WHERE Name != null {src} ORDER BY Name LIMIT 5"
        ));
        assert_eq!(q.with.as_ref().map(|w| w.kind.clone()), Some(kind), "{src}");
        assert_eq!(q.limit.map(|l| l.value), Some(5));
    }
    let q = ok("SELECT Title FROM KnowledgeArticleVersion WHERE PublishStatus = 'online' \
                WITH DATA CATEGORY Geography__c AT (usa__c, uk__c) AND Product__c ABOVE_OR_BELOW mobile_phones__c \
                AND Topic__c BELOW x__c AND Region__c ABOVE y__c");
    let Some(WithClause {
        kind: WithKind::DataCategory(f),
        ..
    }) = &q.with
    else {
        panic!()
    };
    assert_eq!(f.len(), 4);
    assert_eq!(f[0].group.name, "Geography__c");
    assert_eq!(f[0].op, DataCategoryOp::At);
    assert_eq!(f[0].categories.len(), 2);
    assert_eq!(f[1].op, DataCategoryOp::AboveOrBelow);
    assert_eq!(f[2].op, DataCategoryOp::Below);
    assert_eq!(f[3].op, DataCategoryOp::Above);
    check_err("SELECT Id FROM Account WITH FOO", "'FOO'", 29);
    check_err(
        "SELECT Id FROM Account WITH DATA Geo__c AT x__c",
        "'Geo__c'",
        34,
    );
    check_err(
        "SELECT Id FROM Account WITH DATA CATEGORY Geo__c NEAR x__c",
        "'NEAR'",
        50,
    );
}

#[test]
fn group_by_forms() {
    let q = ok("SELECT Type, Industry, COUNT(Id) FROM Account GROUP BY Type, Industry");
    let g = q.group_by.unwrap();
    assert_eq!((g.kind, g.fields.len()), (GroupByKind::Plain, 2));
    let q = ok("SELECT Type, Industry, GROUPING(Type) gt, COUNT(Id) FROM Account GROUP BY ROLLUP(Type, Industry)");
    let g = q.group_by.unwrap();
    assert_eq!((g.kind, g.fields.len()), (GroupByKind::Rollup, 2));
    let q = ok("SELECT Type, COUNT(Id) FROM Account GROUP BY cube(Type) HAVING COUNT(Id) > 2");
    let g = q.group_by.unwrap();
    assert_eq!((g.kind, g.fields.len()), (GroupByKind::Cube, 1));
    assert!(q.having.is_some());
    let q = ok("SELECT CALENDAR_YEAR(CreatedDate) y, COUNT(Id) FROM Account GROUP BY CALENDAR_YEAR(CreatedDate)");
    assert!(matches!(
        &q.group_by.unwrap().fields[0],
        FieldExpr::Function(_)
    ));
    // a field called Rollup is still a field
    let q = ok("SELECT Rollup, COUNT(Id) FROM Thing__c GROUP BY Rollup");
    assert_eq!(q.group_by.unwrap().kind, GroupByKind::Plain);
    check_err("SELECT Name FROM Account GROUP BY", "<EOF>", 34);
    check_err("SELECT Name FROM Account GROUP Name", "'Name'", 32);
    check_err("SELECT Name FROM Account GROUP BY ROLLUP(Name", "<EOF>", 46);
}

#[test]
fn order_by_forms() {
    let q = ok("SELECT Id FROM Account ORDER BY Name ASC, CreatedDate DESC NULLS LAST, Industry NULLS FIRST, Owner.Name");
    let o = &q.order_by;
    assert_eq!(o.len(), 4);
    assert_eq!(
        (o[0].direction, o[0].nulls),
        (Some(SortDirection::Asc), None)
    );
    assert_eq!(
        (o[1].direction, o[1].nulls),
        (Some(SortDirection::Desc), Some(NullsOrder::Last))
    );
    assert_eq!(
        (o[2].direction, o[2].nulls),
        (None, Some(NullsOrder::First))
    );
    assert_eq!((o[3].direction, o[3].nulls), (None, None));
    check_err("SELECT Id FROM Account ORDER BY Name NULLS", "<EOF>", 43);
    check_err(
        "SELECT Id FROM Account ORDER BY Name NULLS MIDDLE",
        "'MIDDLE'",
        44,
    );
    check_err("SELECT Id FROM Account ORDER Name", "'Name'", 30);
    check_err("SELECT Id FROM Account ORDER BY Name DESC ASC", "'ASC'", 43);
}

#[test]
fn limit_and_offset() {
    let q = ok("SELECT Id FROM Account LIMIT 10 OFFSET 2000");
    assert_eq!(q.limit.map(|l| l.value), Some(10));
    assert_eq!(q.offset.map(|l| l.value), Some(2000));
    let q = ok("SELECT Id FROM Account OFFSET 5");
    assert!(q.limit.is_none() && q.offset.is_some());
    ok("SELECT Id FROM Account LIMIT 0");
    ok("SELECT Id FROM Account LIMIT 2147483647");
    check_err("SELECT Id FROM Account LIMIT -1", "'-1'", 30);
    check_err("SELECT Id FROM Account LIMIT 1.5", "'1.5'", 30);
    check_err(
        "SELECT Id FROM Account LIMIT 99999999999",
        "LIMIT must be an integer",
        30,
    );
    check_err(
        "SELECT Id FROM Account LIMIT 2147483648",
        "LIMIT must be an integer",
        30,
    );
    check_err("SELECT Id FROM Account LIMIT", "<EOF>", 29);
    check_err(
        "SELECT Id FROM Account LIMIT 'x'",
        "unexpected token: 'x'",
        30,
    );
    check_err("SELECT Id FROM Account OFFSET 5 LIMIT 10", "'LIMIT'", 33);
    check_err("SELECT Id FROM Account LIMIT 1 LIMIT 2", "'LIMIT'", 32);
}

#[test]
fn for_and_update_clauses() {
    for (src, f) in [
        ("FOR VIEW", ForClause::View),
        ("for reference", ForClause::Reference),
        ("FOR UPDATE", ForClause::Update),
    ] {
        let q = ok(&format!("SELECT Id FROM Account LIMIT 1 {src}"));
        assert_eq!(q.for_clause, Some(f), "{src}");
    }
    for (src, u) in [
        ("UPDATE TRACKING", UpdateClause::Tracking),
        ("UPDATE VIEWSTAT", UpdateClause::Viewstat),
    ] {
        let q = ok(&format!(
            "SELECT Title FROM FAQ__kav WHERE Keyword = 'x' {src}"
        ));
        assert_eq!(q.update, Some(u), "{src}");
    }
    let q = ok("SELECT Id FROM Account FOR VIEW UPDATE TRACKING");
    assert_eq!(
        (q.for_clause, q.update),
        (Some(ForClause::View), Some(UpdateClause::Tracking))
    );
    check_err("SELECT Id FROM Account FOR", "<EOF>", 27);
    check_err("SELECT Id FROM Account FOR EVER", "'EVER'", 28);
    check_err("SELECT Id FROM Account UPDATE NOW", "'NOW'", 31);
}

#[test]
fn clause_order_is_enforced() {
    check_err(
        "SELECT Id FROM Account LIMIT 5 WHERE Name = 'x'",
        "'WHERE'",
        32,
    );
    check_err(
        "SELECT Id FROM Account ORDER BY Name WHERE Name = 'x'",
        "'WHERE'",
        38,
    );
    check_err(
        "SELECT Id FROM Account WITH SECURITY_ENFORCED WHERE Name = 'x'",
        "'WHERE'",
        47,
    );
}

// ------------------------------------------------------------------------------- clients

#[test]
fn client_query_shapes() {
    let queries = [
        // jsforce builder
        "SELECT Id, Name, (SELECT Id FROM Contacts) FROM Account WHERE Name = 'x' AND (Industry IN ('a', 'b') OR Name LIKE 'y%') ORDER BY Name ASC, CreatedDate DESC NULLS LAST LIMIT 10 OFFSET 5",
        "SELECT Id FROM Account WHERE Name != null AND (NOT Name LIKE 'x%')",
        "SELECT Id FROM Opportunity WHERE CloseDate = LAST_N_DAYS:30 AND CreatedDate > 2012-10-31T12:34:56Z",
        "SELECT Id FROM Account WHERE Tags__c INCLUDES ('a;b') AND Tags__c EXCLUDES ('c')",
        // simple-salesforce format_soql
        "SELECT Id FROM Account WHERE CreatedDate >= 2024-01-01T00:00:00+00:00 AND Name IN ('a','b') AND IsDeleted = false",
        "SELECT Id FROM Contact WHERE LastName LIKE 'O\\'Br%' AND Description = 'line\\nbreak'",
        "SELECT IsSandbox FROM Organization LIMIT 1",
        "SELECT COUNT() FROM Contact",
        "SELECT Id FROM Account WHERE Id IN (SELECT AccountId FROM Contact WHERE LastName = 'x')",
        "SELECT FIELDS(ALL) FROM Account LIMIT 200",
        "SELECT Id, Name, LastModifiedDate FROM Account WHERE LastModifiedDate > 2023-06-01T10:00:00.000Z ORDER BY LastModifiedDate",
        "SELECT Id FROM User WHERE Username = 'a@b.com' AND IsActive = true LIMIT 1",
        "SELECT Id, Name, Account.Name, Owner.Email FROM Contact WHERE Account.Industry = 'Tech' LIMIT 100",
        "SELECT StageName, SUM(Amount) total FROM Opportunity GROUP BY StageName HAVING SUM(Amount) > 1000",
        "SELECT Id FROM Account WITH SECURITY_ENFORCED",
    ];
    for q in queries {
        ok(q);
    }
    let q = ok(queries[0]);
    assert_eq!(q.select.len(), 3);
    assert_eq!(q.order_by.len(), 2);
    assert_eq!((q.limit.unwrap().value, q.offset.unwrap().value), (10, 5));
    let Some(Condition::And { operands, .. }) = &q.where_clause else {
        panic!()
    };
    assert!(
        matches!(&operands[1], Condition::Or { operands, .. } if matches!(operands[0], Condition::InList(_)) && matches!(operands[1], Condition::Like(_)))
    );
}

// ------------------------------------------------------------------------------- errors

#[test]
fn syntax_errors_with_columns() {
    check_err("SELECT Id FROMM Account", "unexpected token: 'FROMM'", 11);
    check_err(
        "SELECT Id FROM Account WHERE",
        "unexpected token: <EOF>",
        29,
    );
    check_err("", "unexpected token: <EOF>", 1);
    check_err("   ", "<EOF>", 4);
    check_err("UPDATE Account SET Name = 'x'", "'UPDATE'", 1);
    check_err("SELECT * FROM Account", "unexpected token: '*'", 8);
    check_err("SELECT Id, FROM Account", "unexpected token: 'FROM'", 12);
    check_err("SELECT FROM Account", "'FROM'", 8);
    check_err("SELECT Id FROM", "<EOF>", 15);
    check_err("SELECT Id FROM WHERE", "'WHERE'", 16);
    check_err("SELECT Id FROM Account Account2 Account3", "'Account3'", 33);
    check_err("SELECT Id FROM Account WHERE NOT", "<EOF>", 33);
    check_err("SELECT Id FROM Account WHERE (Name = 'x'", "<EOF>", 41);
    check_err("SELECT Id FROM Account WHERE Name = 'x')", "')'", 40);
    check_err("SELECT Id FROM Account WHERE Name = ", "<EOF>", 37);
    check_err("SELECT Id FROM Account;", "';'", 23);
    check_err("SELECT Id.  FROM Account", "'FROM'", 13);
    check_err("SELECT Id FROM Account WHERE Name == 'x'", "'='", 36);
    check_err("SELECT Account..Name FROM Contact", "'.'", 16);
    check_err("SELECT Id FROM Account WHERE Name = 'x' LIMIT", "<EOF>", 46);
}

#[test]
fn salesforce_message_format() {
    let input = "SELECT Id FROMM Account";
    let e = err(input);
    assert_eq!(
        e.salesforce_message(input),
        "\nSELECT Id FROMM Account\n          ^\nERROR at Row:1:Column:11\nunexpected token: 'FROMM'"
    );
    let input = "SELECT Id FROM Account WHERE";
    assert_eq!(
        err(input).salesforce_message(input),
        "\nSELECT Id FROM Account WHERE\n                            ^\nERROR at Row:1:Column:29\nunexpected token: <EOF>"
    );
    let input = "SELECT Id\nFROM Account\nWHERE Name = 'x' OR '1'='1'";
    let e = err(input);
    assert_eq!(line_col(input, e.span.start), (3, 21));
    assert_eq!(
        e.salesforce_message(input),
        "\nWHERE Name = 'x' OR '1'='1'\n                    ^\nERROR at Row:3:Column:21\nunexpected token: '1'"
    );
    // resolver-style use of the helper
    let input = "SELECT Idd FROM Account";
    assert_eq!(
        caret_message(input, Span::new(7, 10), "No such column 'Idd' on entity 'Account'."),
        "\nSELECT Idd FROM Account\n       ^\nERROR at Row:1:Column:8\nNo such column 'Idd' on entity 'Account'."
    );
}

#[test]
fn error_spans_cover_the_offending_token() {
    let input = "SELECT Id FROMM Account";
    assert_eq!(slice(input, err(input).span), "FROMM");
    let input = "SELECT Id FROM Account WHERE";
    assert_eq!(err(input).span, Span::new(input.len(), input.len()));
    let input = "SELECT Id FROM Account WHERE X = 1e3";
    assert_eq!(slice(input, err(input).span), "1e3");
    let input = "SELECT Id FROM Account WHERE Name = 'x' AND y = 'ünï' OR z = 1";
    assert_eq!(slice(input, err(input).span), "OR");
    let e = err("SELECT Id FROM Account WHERE Name = 'héllo' OR é");
    assert_eq!(
        line_col(
            "SELECT Id FROM Account WHERE Name = 'héllo' OR é",
            e.span.start
        ),
        (1, 48)
    );
}

// ------------------------------------------------------------------------------- hostile input

#[test]
fn injection_shaped_inputs() {
    check_err(
        "SELECT Id FROM Account WHERE Name = 'x' OR '1'='1'",
        "unexpected token: '1'",
        44,
    );
    check_err(
        "SELECT Id FROM Account WHERE Name = ''; DROP TABLE Account",
        "unexpected token: ';'",
        39,
    );
    check_err(
        "SELECT Id FROM Account WHERE Name = 'x'; DELETE FROM Account",
        "';'",
        40,
    );
    check_err(
        "SELECT Id FROM Account WHERE Name = 'x' -- comment",
        "'-'",
        41,
    );
    check_err("SELECT Id FROM Account WHERE Name = 'x' /* c */", "'/'", 41);
    check_err(
        "SELECT Id FROM Account UNION SELECT Id FROM Contact",
        "'SELECT'",
        30,
    );
    check_err("SELECT Id FROM Account WHERE Name = 'x' OR 1=1", "'1'", 44);
    // an escaped quote keeps the injection inside the string
    let Condition::Compare(c) = where_of(r"SELECT Id FROM Account WHERE Name = 'x\' OR \'1\'=\'1'")
    else {
        panic!()
    };
    assert_eq!(c.value.kind, ValueKind::String("x' OR '1'='1".into()));
    // control characters inside a string are just text; outside they are rejected
    assert_eq!(value_of("'x\0'"), ValueKind::String("x\0".into()));
    check_err(
        "SELECT Id FROM Account WHERE Name\0= 'x'",
        "unexpected token",
        34,
    );
}

#[test]
fn deeply_nested_parentheses_are_rejected_not_overflowed() {
    let depth = 10_000;
    let input = format!(
        "SELECT Id FROM Account WHERE {}Name = 'x'{}",
        "(".repeat(depth),
        ")".repeat(depth)
    );
    let e = err(&input);
    assert!(e.message.contains("nested too deeply"), "{}", e.message);
    // the error points at the first parenthesis past the limit
    assert_eq!(
        e.span.start,
        "SELECT Id FROM Account WHERE ".len() + MAX_DEPTH
    );
    // unbalanced, too
    let e = err(&format!(
        "SELECT Id FROM Account WHERE {}",
        "(".repeat(depth)
    ));
    assert!(e.message.contains("nested too deeply"));
    // NOT chains
    let e = err(&format!(
        "SELECT Id FROM Account WHERE {}Name = 'x'",
        "NOT ".repeat(depth)
    ));
    assert!(e.message.contains("nested too deeply"));
    // function nesting
    let e = err(&format!(
        "SELECT {}Id{} FROM Account",
        "FORMAT(".repeat(depth),
        ")".repeat(depth)
    ));
    assert!(e.message.contains("nested too deeply"));
    // just under the limit is fine
    let ok_depth = MAX_DEPTH - 1;
    ok(&format!(
        "SELECT Id FROM Account WHERE {}Name = 'x'{}",
        "(".repeat(ok_depth),
        ")".repeat(ok_depth)
    ));
    // semi-join inside many parentheses: the subquery counts too
    let inner = "Id IN (SELECT AccountId FROM Contact WHERE (((Name = 'x'))))";
    ok(&format!(
        "SELECT Id FROM Account WHERE {}{inner}{}",
        "(".repeat(10),
        ")".repeat(10)
    ));
}

#[test]
fn deep_nesting_on_a_small_stack() {
    // the recursion limit must keep us well inside even a small thread stack
    let handle = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(|| {
            let n = 50_000;
            let a = parse(&format!(
                "SELECT Id FROM Account WHERE {}a = 1{}",
                "(".repeat(n),
                ")".repeat(n)
            ));
            let b = parse(&format!(
                "SELECT Id FROM Account WHERE {}a = 1",
                "NOT (".repeat(n)
            ));
            let c = parse(&format!("SELECT {}Id FROM Account", "SUM(".repeat(n)));
            let d = parse(&format!(
                "SELECT Id FROM Account WHERE {}a = 1",
                "(NOT ".repeat(n)
            ));
            [a.is_err(), b.is_err(), c.is_err(), d.is_err()]
        })
        .expect("spawn");
    assert_eq!(handle.join().expect("no stack overflow"), [true; 4]);
}

#[test]
fn long_flat_constructs_do_not_recurse() {
    let conds: Vec<String> = (0..5000).map(|i| format!("F{i} = {i}")).collect();
    let input = format!("SELECT Id FROM Account WHERE {}", conds.join(" AND "));
    let Condition::And { operands, span } = where_of(&input) else {
        panic!()
    };
    assert_eq!(operands.len(), 5000);
    assert_eq!(span.end, input.len());
    let path = vec!["Parent"; 5000].join(".");
    let q = ok(&format!("SELECT {path}.Name FROM Account"));
    let SelectItem::Field(p) = &q.select[0] else {
        panic!()
    };
    assert_eq!(p.segments.len(), 5001);
    let items: Vec<String> = (0..5000).map(|i| format!("F{i}__c")).collect();
    let q = ok(&format!(
        "SELECT {} FROM Account ORDER BY {}",
        items.join(", "),
        items.join(", ")
    ));
    assert_eq!((q.select.len(), q.order_by.len()), (5000, 5000));
}

#[test]
fn fields_named_like_keywords() {
    let q = ok("SELECT Typeof, Fields, Rollup, Scope, Data FROM Thing__c");
    assert_eq!(q.select.len(), 5);
    assert!(q.select.iter().all(|i| matches!(i, SelectItem::Field(_))));
    check_err("SELECT Id FROM Account WHERE Name.FROM = 'x'", "'FROM'", 35);
    check_err("SELECT Select FROM Account", "'Select'", 8);
}

#[test]
fn many_child_subqueries() {
    let subs: Vec<String> = (0..200)
        .map(|i| format!("(SELECT Id FROM Rel{i}__r WHERE Name = 'x{i}')"))
        .collect();
    let input = format!("SELECT Id, {} FROM Account", subs.join(", "));
    let q = ok(&input);
    assert_eq!(q.select.len(), 201);
    assert!(matches!(&q.select[200], SelectItem::SubQuery(s) if s.from.object.name == "Rel199__r"));
}

#[test]
fn query_length_cap() {
    let filler = "x".repeat(crate::MAX_QUERY_CHARS);
    let input = format!("SELECT Id FROM Account WHERE Name = '{filler}'");
    let e = err(&input);
    assert!(
        e.message
            .contains("cannot be longer than 100000 characters"),
        "{}",
        e.message
    );
    assert_eq!(e.span.start, crate::MAX_QUERY_CHARS);
    let msg = e.salesforce_message(&input);
    assert!(msg.len() < 2_000, "diagram must not echo the whole query");
    // exactly at the limit (in chars, multi-byte) is accepted
    let base = "SELECT Id FROM Account WHERE Name = ''";
    let fill = "é".repeat(crate::MAX_QUERY_CHARS - base.chars().count());
    let input = format!("SELECT Id FROM Account WHERE Name = '{fill}'");
    assert_eq!(input.chars().count(), crate::MAX_QUERY_CHARS);
    ok(&input);
    // a long query of many small tokens
    let ids: Vec<String> = (0..8000).map(|i| format!("'{i:07}'")).collect();
    let input = format!("SELECT Id FROM Account WHERE Id IN ({})", ids.join(","));
    assert!(input.len() < crate::MAX_QUERY_CHARS);
    let Condition::InList(l) = where_of(&input) else {
        panic!()
    };
    assert_eq!(l.values.len(), 8000);
}

#[test]
fn huge_token_in_error_message_is_truncated() {
    let word = "A".repeat(5000);
    let e = err(&format!("SELECT Id FROM Account WHERE Name = {word}"));
    assert!(e.message.len() < 200, "{}", e.message.len());
}

// ------------------------------------------------------------------------------- properties

mod props {
    use super::*;
    use proptest::prelude::*;

    /// Every error span lies inside the input on char boundaries and renders a diagram.
    fn assert_clean(input: &str) {
        if let Err(e) = parse(input) {
            assert!(e.span.start <= e.span.end, "{e:?}");
            assert!(e.span.end <= input.len(), "{e:?}");
            assert!(
                input.is_char_boundary(e.span.start) && input.is_char_boundary(e.span.end),
                "{e:?}"
            );
            let m = e.salesforce_message(input);
            assert!(m.contains("ERROR at Row:"));
        }
    }

    const FRAGMENTS: &[&str] = &[
        "SELECT",
        "FROM",
        "WHERE",
        "AND",
        "OR",
        "NOT",
        "IN",
        "LIKE",
        "INCLUDES",
        "EXCLUDES",
        "GROUP",
        "BY",
        "ROLLUP",
        "CUBE",
        "HAVING",
        "ORDER",
        "ASC",
        "DESC",
        "NULLS",
        "FIRST",
        "LAST",
        "LIMIT",
        "OFFSET",
        "FOR",
        "VIEW",
        "UPDATE",
        "TRACKING",
        "WITH",
        "SECURITY_ENFORCED",
        "DATA",
        "CATEGORY",
        "AT",
        "USING",
        "SCOPE",
        "TYPEOF",
        "WHEN",
        "THEN",
        "ELSE",
        "END",
        "FIELDS",
        "ALL",
        "COUNT",
        "SUM",
        "convertTimezone",
        "HOUR_IN_DAY",
        "Id",
        "Name",
        "Account",
        "Contacts",
        "a.b",
        "c",
        "(",
        ")",
        ",",
        ".",
        ":",
        "=",
        "!=",
        "<>",
        "<",
        "<=",
        ">",
        ">=",
        "'x'",
        "'a\\'b'",
        "'\\u00e9'",
        "'%_\\%'",
        "'unterminated",
        "1",
        "-2.5",
        "99999999999999999999999",
        "2024-01-01",
        "2024-01-01T00:00:00Z",
        "2024-02-30",
        "TODAY",
        "LAST_N_DAYS:5",
        "LAST_N_DAYS",
        "USD10",
        "null",
        "TRUE",
        "*",
        ";",
        "é",
        "\\",
        "\n",
    ];

    fn token_soup() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(FRAGMENTS), 0..40).prop_map(|v| v.join(" "))
    }

    fn select_prefixed_soup() -> impl Strategy<Value = String> {
        token_soup().prop_map(|s| format!("SELECT Id FROM Account WHERE {s}"))
    }

    #[derive(Debug, Clone)]
    enum Cond {
        Leaf(u8),
        Not(Box<Cond>),
        And(Vec<Cond>),
        Or(Vec<Cond>),
    }

    fn cond() -> impl Strategy<Value = Cond> {
        let leaf = (0u8..6).prop_map(Cond::Leaf);
        leaf.prop_recursive(5, 40, 4, |inner| {
            prop_oneof![
                inner.clone().prop_map(|c| Cond::Not(Box::new(c))),
                prop::collection::vec(inner.clone(), 2..4).prop_map(Cond::And),
                prop::collection::vec(inner, 2..4).prop_map(Cond::Or),
            ]
        })
    }

    fn render(c: &Cond) -> String {
        match c {
            Cond::Leaf(0) => "Name = 'x'".into(),
            Cond::Leaf(1) => "Amount > -2.5".into(),
            Cond::Leaf(2) => "Id IN ('a', 'b')".into(),
            Cond::Leaf(3) => "CreatedDate = LAST_N_DAYS:3".into(),
            Cond::Leaf(4) => "Name LIKE 'a\\%%'".into(),
            Cond::Leaf(_) => "CALENDAR_YEAR(CreatedDate) != 2020".into(),
            Cond::Not(c) => format!("NOT ({})", render(c)),
            Cond::And(v) => v
                .iter()
                .map(|c| format!("({})", render(c)))
                .collect::<Vec<_>>()
                .join(" AND "),
            Cond::Or(v) => v
                .iter()
                .map(|c| format!("({})", render(c)))
                .collect::<Vec<_>>()
                .join(" OR "),
        }
    }

    fn leaves(c: &Cond) -> usize {
        match c {
            Cond::Leaf(_) => 1,
            Cond::Not(c) => leaves(c),
            Cond::And(v) | Cond::Or(v) => v.iter().map(leaves).sum(),
        }
    }

    fn ast_leaves(c: &Condition) -> usize {
        match c {
            Condition::And { operands, .. } | Condition::Or { operands, .. } => {
                operands.iter().map(ast_leaves).sum()
            }
            Condition::Not { operand, .. } => ast_leaves(operand),
            _ => 1,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn random_strings_never_panic(s in "\\PC{0,200}") {
            assert_clean(&s);
        }

        #[test]
        fn random_bytes_as_lossy_text_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            assert_clean(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn soql_alphabet_never_panics(s in "[SELECTFROMWHERAND ()',.:=<>!%_\\\\0-9a-zT+-]{0,120}") {
            assert_clean(&s);
            assert_clean(&format!("SELECT Id FROM Account WHERE {s}"));
        }

        #[test]
        fn token_soups_never_panic(s in token_soup()) {
            assert_clean(&s);
        }

        #[test]
        fn where_token_soups_never_panic(s in select_prefixed_soup()) {
            assert_clean(&s);
        }

        #[test]
        fn generated_conditions_parse(c in cond()) {
            let input = format!("SELECT Id FROM Account WHERE {}", render(&c));
            let q = parse(&input).map_err(|e| e.salesforce_message(&input));
            prop_assert!(q.is_ok(), "{:?}", q);
            let w = q.unwrap().where_clause.unwrap();
            prop_assert_eq!(ast_leaves(&w), leaves(&c));
            prop_assert_eq!(w.span().end, input.len());
        }

        #[test]
        fn string_literals_round_trip(s in "\\PC{0,40}") {
            // escape the way simple-salesforce does, then parse back
            let mut quoted = String::from("'");
            for ch in s.chars() {
                match ch {
                    '\\' => quoted.push_str("\\\\"),
                    '\'' => quoted.push_str("\\'"),
                    '"' => quoted.push_str("\\\""),
                    '\n' => quoted.push_str("\\n"),
                    '\r' => quoted.push_str("\\r"),
                    '\t' => quoted.push_str("\\t"),
                    '\u{8}' => quoted.push_str("\\b"),
                    '\u{c}' => quoted.push_str("\\f"),
                    c => quoted.push(c),
                }
            }
            quoted.push('\'');
            prop_assert_eq!(value_of(&quoted), ValueKind::String(s));
        }

        #[test]
        fn integers_round_trip(n in any::<i64>()) {
            prop_assert_eq!(value_of(&n.to_string()), ValueKind::Integer(n));
        }

        #[test]
        fn valid_dates_parse(y in 1700i32..4000, m in 1u32..=12, d in 1u32..=31) {
            let src = format!("{y:04}-{m:02}-{d:02}");
            let input = format!("SELECT Id FROM Account WHERE D = {src}");
            let valid = d <= crate::lexer::days_in_month(y, m);
            match parse(&input) {
                Ok(_) => prop_assert!(valid),
                Err(e) => {
                    prop_assert!(!valid);
                    prop_assert!(e.message.contains("invalid date"));
                }
            }
        }
    }
}
