//! Recursive-descent SOQL parser producing the [`crate::ast`] tree.
//!
//! Hostile input is expected: the input length is capped, every recursive construct
//! (parenthesised conditions, `NOT`, subqueries, nested function calls) counts against a
//! nesting limit, and every failure is a [`ParseError`] (`MALFORMED_QUERY`) — never a panic.

use crate::ast::*;
use crate::error::{ParseError, Span};
use crate::lexer::{quote_token, tokenize, StrLit, Tok, Token};

/// Maximum query length in chars (Salesforce: 100,000).
pub const MAX_QUERY_CHARS: usize = 100_000;

/// Maximum nesting of parentheses / `NOT` / subqueries / function calls.
pub const MAX_DEPTH: usize = 64;

/// Largest `LIMIT` / `OFFSET` / `N` in a date literal that is accepted.
const MAX_COUNT: u64 = i32::MAX as u64;

/// SOQL reserved words: never an alias, never a bare (single-segment) field name.
const RESERVED: &[&str] = &[
    "AND", "ASC", "DESC", "EXCLUDES", "FIRST", "FROM", "GROUP", "HAVING", "IN", "INCLUDES", "LAST",
    "LIKE", "LIMIT", "NOT", "NULL", "NULLS", "OR", "SELECT", "WHERE", "WITH", "TRUE", "FALSE",
];

/// Words that start or structure a clause; never taken as an alias.
const CLAUSE_WORDS: &[&str] = &[
    "AS", "USING", "ORDER", "OFFSET", "FOR", "UPDATE", "TYPEOF", "WHEN", "THEN", "ELSE", "END",
];

fn is_reserved(word: &str) -> bool {
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(word))
}

fn is_alias_candidate(word: &str) -> bool {
    !is_reserved(word) && !CLAUSE_WORDS.iter().any(|r| r.eq_ignore_ascii_case(word))
}

/// Parses one SOQL statement.
pub fn parse(soql: &str) -> Result<Query, ParseError> {
    // cheap byte test first; chars are counted only when the bytes could exceed the cap
    if soql.len() > MAX_QUERY_CHARS {
        if let Some((offset, _)) = soql.char_indices().nth(MAX_QUERY_CHARS) {
            return Err(ParseError::malformed(
                format!("SOQL statements cannot be longer than {MAX_QUERY_CHARS} characters"),
                Span::new(offset, offset),
            ));
        }
    }
    let toks = tokenize(soql);
    let mut p = Parser {
        src: soql,
        toks,
        pos: 0,
        depth: 0,
        last_end: 0,
    };
    let q = p.query(Ctx::Top)?;
    match p.peek().kind {
        Tok::Eof => Ok(q),
        _ => Err(p.unexpected_here()),
    }
}

/// Where a query appears, which decides what it may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    /// The outermost query.
    Top,
    /// A parent-to-child subquery in a select list.
    Child,
    /// A semi-join / anti-join subquery in `IN (SELECT ...)`.
    SemiJoin,
}

/// Whether `IN (SELECT ...)` is allowed in the condition being parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SemiJoinRule {
    Allowed,
    Forbidden(&'static str),
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<Token>,
    pos: usize,
    depth: usize,
    /// End of the last consumed token.
    last_end: usize,
}

impl<'a> Parser<'a> {
    // ---------------------------------------------------------------- token helpers

    fn peek(&self) -> &Token {
        // the stream always ends with Eof/Error and `pos` never moves past it
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }

    fn peek_nth(&self, n: usize) -> &Token {
        &self.toks[(self.pos + n).min(self.toks.len() - 1)]
    }

    fn bump(&mut self) -> Token {
        let t = self.peek().clone();
        if !matches!(t.kind, Tok::Eof | Tok::Error(_)) {
            self.pos += 1;
            self.last_end = t.span.end;
        }
        t
    }

    fn text(&self, span: Span) -> &'a str {
        self.src.get(span.start..span.end).unwrap_or("")
    }

    fn is_kw_tok(&self, t: &Token, kw: &str) -> bool {
        matches!(t.kind, Tok::Ident) && self.text(t.span).eq_ignore_ascii_case(kw)
    }

    fn at_kw(&self, kw: &str) -> bool {
        self.is_kw_tok(self.peek(), kw)
    }

    fn eat_kw(&mut self, kw: &str) -> Option<Span> {
        if self.at_kw(kw) {
            Some(self.bump().span)
        } else {
            None
        }
    }

    fn expect_kw(&mut self, kw: &str) -> Result<Span, ParseError> {
        self.eat_kw(kw).ok_or_else(|| self.unexpected_here())
    }

    fn at(&self, kind: &Tok) -> bool {
        &self.peek().kind == kind
    }

    fn eat(&mut self, kind: &Tok) -> Option<Span> {
        if self.at(kind) {
            Some(self.bump().span)
        } else {
            None
        }
    }

    fn expect(&mut self, kind: &Tok) -> Result<Span, ParseError> {
        self.eat(kind).ok_or_else(|| self.unexpected_here())
    }

    fn unexpected(&self, t: &Token) -> ParseError {
        match &t.kind {
            Tok::Error(e) => e.clone(),
            Tok::Eof => ParseError::malformed("unexpected token: <EOF>", t.span),
            _ => ParseError::malformed(
                format!("unexpected token: {}", quote_token(self.text(t.span))),
                t.span,
            ),
        }
    }

    fn unexpected_here(&self) -> ParseError {
        self.unexpected(self.peek())
    }

    fn enter(&mut self, span: Span) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ParseError::malformed(
                format!("query is nested too deeply (maximum nesting depth is {MAX_DEPTH})"),
                span,
            ));
        }
        Ok(())
    }

    fn exit(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// Any identifier token.
    fn ident(&mut self) -> Result<Ident, ParseError> {
        if matches!(self.peek().kind, Tok::Ident) {
            let t = self.bump();
            Ok(Ident {
                name: self.text(t.span).to_string(),
                span: t.span,
            })
        } else {
            Err(self.unexpected_here())
        }
    }

    /// An identifier that is not a reserved word.
    fn plain_ident(&mut self) -> Result<Ident, ParseError> {
        if matches!(self.peek().kind, Tok::Ident) && is_reserved(self.text(self.peek().span)) {
            return Err(self.unexpected_here());
        }
        self.ident()
    }

    /// An optional alias (an identifier that is no keyword).
    fn opt_alias(&mut self) -> Option<Ident> {
        let t = self.peek();
        if matches!(t.kind, Tok::Ident) && is_alias_candidate(self.text(t.span)) {
            let t = self.bump();
            Some(Ident {
                name: self.text(t.span).to_string(),
                span: t.span,
            })
        } else {
            None
        }
    }

    // ---------------------------------------------------------------- query

    fn query(&mut self, ctx: Ctx) -> Result<Query, ParseError> {
        let start = self.expect_kw("SELECT")?;
        let select = self.select_list(ctx)?;
        self.expect_kw("FROM")?;
        let from = self.parse_from(ctx)?;

        let using_scope = if self.eat_kw("USING").is_some() {
            self.expect_kw("SCOPE")?;
            Some(self.plain_ident()?)
        } else {
            None
        };

        let where_clause = if self.eat_kw("WHERE").is_some() {
            let rule = match ctx {
                Ctx::SemiJoin => {
                    SemiJoinRule::Forbidden("Nesting of semi join sub-selects is not supported")
                }
                _ => SemiJoinRule::Allowed,
            };
            Some(self.condition(rule)?)
        } else {
            None
        };

        let with = if self.at_kw("WITH") {
            Some(self.with_clause()?)
        } else {
            None
        };

        let mut having = None;
        let group_by = if self.at_kw("GROUP") {
            let g = self.group_by()?;
            if self.eat_kw("HAVING").is_some() {
                having = Some(self.condition(SemiJoinRule::Forbidden(
                    "semi join sub-selects are not allowed in HAVING",
                ))?);
            }
            Some(g)
        } else {
            None
        };

        let mut order_by = Vec::new();
        if self.eat_kw("ORDER").is_some() {
            self.expect_kw("BY")?;
            loop {
                order_by.push(self.order_item()?);
                if self.eat(&Tok::Comma).is_none() {
                    break;
                }
            }
        }

        let limit = if self.eat_kw("LIMIT").is_some() {
            Some(self.row_count("LIMIT")?)
        } else {
            None
        };
        let offset = if self.eat_kw("OFFSET").is_some() {
            Some(self.row_count("OFFSET")?)
        } else {
            None
        };

        let for_clause = if self.eat_kw("FOR").is_some() {
            if self.eat_kw("VIEW").is_some() {
                Some(ForClause::View)
            } else if self.eat_kw("REFERENCE").is_some() {
                Some(ForClause::Reference)
            } else if self.eat_kw("UPDATE").is_some() {
                Some(ForClause::Update)
            } else {
                return Err(self.unexpected_here());
            }
        } else {
            None
        };

        let update = if self.eat_kw("UPDATE").is_some() {
            if self.eat_kw("TRACKING").is_some() {
                Some(UpdateClause::Tracking)
            } else if self.eat_kw("VIEWSTAT").is_some() {
                Some(UpdateClause::Viewstat)
            } else {
                return Err(self.unexpected_here());
            }
        } else {
            None
        };

        let q = Query {
            select,
            from,
            using_scope,
            where_clause,
            with,
            group_by,
            having,
            order_by,
            limit,
            offset,
            for_clause,
            update,
            span: Span::new(start.start, self.last_end),
        };
        check_query(&q, ctx)?;
        Ok(q)
    }

    fn select_list(&mut self, ctx: Ctx) -> Result<Vec<SelectItem>, ParseError> {
        let mut items = Vec::new();
        loop {
            items.push(self.select_item(ctx)?);
            if self.eat(&Tok::Comma).is_none() {
                break;
            }
        }
        Ok(items)
    }

    fn select_item(&mut self, ctx: Ctx) -> Result<SelectItem, ParseError> {
        let t = self.peek().clone();
        match t.kind {
            Tok::LParen => {
                if ctx != Ctx::Top {
                    return Err(ParseError::malformed(
                        "nested relationship subqueries are not supported: a subquery may not contain another subquery in its SELECT list",
                        t.span,
                    ));
                }
                self.enter(t.span)?;
                self.bump();
                let q = self.query(Ctx::Child)?;
                self.expect(&Tok::RParen)?;
                self.exit();
                Ok(SelectItem::SubQuery(Box::new(q)))
            }
            Tok::Ident => {
                let word = self.text(t.span);
                let next = &self.peek_nth(1).kind;
                if word.eq_ignore_ascii_case("FIELDS") && *next == Tok::LParen {
                    return self.fields_selector();
                }
                let next_word = self.text(self.peek_nth(1).span);
                if word.eq_ignore_ascii_case("TYPEOF")
                    && *next == Tok::Ident
                    && !is_reserved(next_word)
                {
                    return self.type_of();
                }
                if *next == Tok::LParen {
                    let call = self.function_call()?;
                    let alias = self.opt_alias();
                    return Ok(SelectItem::Function { call, alias });
                }
                Ok(SelectItem::Field(self.field_path()?))
            }
            _ => Err(self.unexpected(&t)),
        }
    }

    fn fields_selector(&mut self) -> Result<SelectItem, ParseError> {
        let start = self.bump().span;
        self.expect(&Tok::LParen)?;
        let kind = if self.eat_kw("ALL").is_some() {
            FieldsKind::All
        } else if self.eat_kw("STANDARD").is_some() {
            FieldsKind::Standard
        } else if self.eat_kw("CUSTOM").is_some() {
            FieldsKind::Custom
        } else {
            return Err(self.unexpected_here());
        };
        let end = self.expect(&Tok::RParen)?;
        Ok(SelectItem::Fields(FieldsSelector {
            kind,
            span: start.to(end),
        }))
    }

    fn type_of(&mut self) -> Result<SelectItem, ParseError> {
        let start = self.bump().span;
        let field = self.plain_ident()?;
        let mut whens = Vec::new();
        while let Some(w) = self.eat_kw("WHEN") {
            let object = self.plain_ident()?;
            self.expect_kw("THEN")?;
            let fields = self.field_path_list()?;
            whens.push(TypeOfWhen {
                object,
                fields,
                span: Span::new(w.start, self.last_end),
            });
        }
        if whens.is_empty() {
            return Err(self.unexpected_here());
        }
        let else_fields = if self.eat_kw("ELSE").is_some() {
            Some(self.field_path_list()?)
        } else {
            None
        };
        let end = self.expect_kw("END")?;
        Ok(SelectItem::TypeOf(TypeOf {
            field,
            whens,
            else_fields,
            span: start.to(end),
        }))
    }

    fn field_path_list(&mut self) -> Result<Vec<FieldPath>, ParseError> {
        let mut out = vec![self.field_path()?];
        while self.eat(&Tok::Comma).is_some() {
            out.push(self.field_path()?);
        }
        Ok(out)
    }

    /// `a.b.c`. Reserved words are rejected as segments, except `Group` used as a
    /// relationship (`Group.Name`).
    fn field_path(&mut self) -> Result<FieldPath, ParseError> {
        let mut segments = Vec::new();
        loop {
            let seg = self.ident()?;
            let relationship = self.at(&Tok::Dot) && seg.name.eq_ignore_ascii_case("GROUP");
            if is_reserved(&seg.name) && !relationship {
                return Err(ParseError::malformed(
                    format!("unexpected token: {}", quote_token(&seg.name)),
                    seg.span,
                ));
            }
            segments.push(seg);
            if self.eat(&Tok::Dot).is_none() {
                break;
            }
        }
        let span = Span::new(segments[0].span.start, self.last_end);
        Ok(FieldPath { segments, span })
    }

    fn field_expr(&mut self) -> Result<FieldExpr, ParseError> {
        if matches!(self.peek().kind, Tok::Ident) && self.peek_nth(1).kind == Tok::LParen {
            Ok(FieldExpr::Function(self.function_call()?))
        } else {
            Ok(FieldExpr::Field(self.field_path()?))
        }
    }

    fn function_call(&mut self) -> Result<FunctionCall, ParseError> {
        let name = self.ident()?;
        let Some(kind) = FunctionKind::from_name(&name.name) else {
            return Err(ParseError::malformed(
                format!("unknown function: {}", quote_token(&name.name)),
                name.span,
            ));
        };
        let lparen = self.expect(&Tok::LParen)?;
        self.enter(lparen)?;
        let (min, max) = kind.arity();
        let mut args = Vec::new();
        if !self.at(&Tok::RParen) || min > 0 {
            loop {
                args.push(self.field_expr()?);
                if args.len() >= max || self.eat(&Tok::Comma).is_none() {
                    break;
                }
            }
        }
        let end = self.expect(&Tok::RParen)?;
        self.exit();
        Ok(FunctionCall {
            kind,
            span: name.span.to(end),
            name,
            args,
        })
    }

    fn parse_from(&mut self, ctx: Ctx) -> Result<FromClause, ParseError> {
        let t = self.peek().clone();
        if matches!(t.kind, Tok::Ident) {
            let word = self.text(t.span);
            // `FROM Group` is a real object even though GROUP is reserved
            if is_reserved(word) && !word.eq_ignore_ascii_case("GROUP") {
                return Err(self.unexpected(&t));
            }
        }
        let first = self.ident()?;
        let (qualifier, object) = if ctx == Ctx::Child && self.eat(&Tok::Dot).is_some() {
            (Some(first), self.ident()?)
        } else {
            (None, first)
        };
        let alias = if self.eat_kw("AS").is_some() {
            match self.opt_alias() {
                Some(a) => Some(a),
                None => return Err(self.unexpected_here()),
            }
        } else {
            self.opt_alias()
        };
        let start = qualifier.as_ref().map(|q| q.span).unwrap_or(object.span);
        Ok(FromClause {
            qualifier,
            object,
            alias,
            span: Span::new(start.start, self.last_end),
        })
    }

    fn with_clause(&mut self) -> Result<WithClause, ParseError> {
        let start = self.expect_kw("WITH")?;
        let kind = if self.eat_kw("SECURITY_ENFORCED").is_some() {
            WithKind::SecurityEnforced
        } else if self.eat_kw("USER_MODE").is_some() {
            WithKind::UserMode
        } else if self.eat_kw("SYSTEM_MODE").is_some() {
            WithKind::SystemMode
        } else if self.eat_kw("DATA").is_some() {
            self.expect_kw("CATEGORY")?;
            let mut filters = Vec::new();
            loop {
                filters.push(self.data_category_filter()?);
                if self.eat_kw("AND").is_none() {
                    break;
                }
            }
            WithKind::DataCategory(filters)
        } else {
            return Err(self.unexpected_here());
        };
        Ok(WithClause {
            kind,
            span: Span::new(start.start, self.last_end),
        })
    }

    fn data_category_filter(&mut self) -> Result<DataCategoryFilter, ParseError> {
        let group = self.plain_ident()?;
        let op = if self.eat_kw("AT").is_some() {
            DataCategoryOp::At
        } else if self.eat_kw("ABOVE").is_some() {
            DataCategoryOp::Above
        } else if self.eat_kw("BELOW").is_some() {
            DataCategoryOp::Below
        } else if self.eat_kw("ABOVE_OR_BELOW").is_some() {
            DataCategoryOp::AboveOrBelow
        } else {
            return Err(self.unexpected_here());
        };
        let mut categories = Vec::new();
        if self.eat(&Tok::LParen).is_some() {
            loop {
                categories.push(self.plain_ident()?);
                if self.eat(&Tok::Comma).is_none() {
                    break;
                }
            }
            self.expect(&Tok::RParen)?;
        } else {
            categories.push(self.plain_ident()?);
        }
        Ok(DataCategoryFilter {
            span: Span::new(group.span.start, self.last_end),
            group,
            op,
            categories,
        })
    }

    fn group_by(&mut self) -> Result<GroupBy, ParseError> {
        let start = self.expect_kw("GROUP")?;
        self.expect_kw("BY")?;
        let next_is_paren = self.peek_nth(1).kind == Tok::LParen;
        let kind = if next_is_paren && self.at_kw("ROLLUP") {
            GroupByKind::Rollup
        } else if next_is_paren && self.at_kw("CUBE") {
            GroupByKind::Cube
        } else {
            GroupByKind::Plain
        };
        let mut fields = Vec::new();
        if kind == GroupByKind::Plain {
            loop {
                fields.push(self.field_expr()?);
                if self.eat(&Tok::Comma).is_none() {
                    break;
                }
            }
        } else {
            self.bump();
            let lp = self.expect(&Tok::LParen)?;
            self.enter(lp)?;
            loop {
                fields.push(self.field_expr()?);
                if self.eat(&Tok::Comma).is_none() {
                    break;
                }
            }
            self.expect(&Tok::RParen)?;
            self.exit();
        }
        Ok(GroupBy {
            kind,
            fields,
            span: Span::new(start.start, self.last_end),
        })
    }

    fn order_item(&mut self) -> Result<OrderItem, ParseError> {
        let expr = self.field_expr()?;
        let direction = if self.eat_kw("ASC").is_some() {
            Some(SortDirection::Asc)
        } else if self.eat_kw("DESC").is_some() {
            Some(SortDirection::Desc)
        } else {
            None
        };
        let nulls = if self.eat_kw("NULLS").is_some() {
            if self.eat_kw("FIRST").is_some() {
                Some(NullsOrder::First)
            } else if self.eat_kw("LAST").is_some() {
                Some(NullsOrder::Last)
            } else {
                return Err(self.unexpected_here());
            }
        } else {
            None
        };
        Ok(OrderItem {
            span: Span::new(expr.span().start, self.last_end),
            expr,
            direction,
            nulls,
        })
    }

    /// An unsigned integer token (`LIMIT`, `OFFSET`, date literal `n`).
    fn unsigned_int(&mut self, what: &str) -> Result<(u32, Span), ParseError> {
        let t = self.peek().clone();
        if t.kind != Tok::Number {
            return Err(self.unexpected(&t));
        }
        let text = self.text(t.span);
        if !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(self.unexpected(&t));
        }
        self.bump();
        match text.parse::<u64>() {
            Ok(v) if v <= MAX_COUNT => Ok((v as u32, t.span)),
            _ => Err(ParseError::malformed(
                format!(
                    "{what} must be an integer between 0 and {MAX_COUNT}, got {}",
                    quote_token(text)
                ),
                t.span,
            )),
        }
    }

    fn row_count(&mut self, what: &str) -> Result<RowCount, ParseError> {
        let (value, span) = self.unsigned_int(what)?;
        Ok(RowCount { value, span })
    }

    // ---------------------------------------------------------------- conditions

    /// `unary (AND unary)*` or `unary (OR unary)*`; mixing needs parentheses.
    fn condition(&mut self, rule: SemiJoinRule) -> Result<Condition, ParseError> {
        let start = self.peek().span.start;
        let first = self.condition_unary(rule)?;
        let (joiner, other) = if self.at_kw("AND") {
            ("AND", "OR")
        } else if self.at_kw("OR") {
            ("OR", "AND")
        } else {
            return Ok(first);
        };
        let mut operands = vec![first];
        while self.eat_kw(joiner).is_some() {
            operands.push(self.condition_unary(rule)?);
        }
        if self.at_kw(other) {
            return Err(self.unexpected_here());
        }
        let span = Span::new(start, self.last_end);
        Ok(if joiner == "AND" {
            Condition::And { operands, span }
        } else {
            Condition::Or { operands, span }
        })
    }

    fn condition_unary(&mut self, rule: SemiJoinRule) -> Result<Condition, ParseError> {
        if let Some(not) = self.eat_kw("NOT") {
            self.enter(not)?;
            let operand = self.condition_unary(rule)?;
            self.exit();
            let span = Span::new(not.start, self.last_end);
            return Ok(Condition::Not {
                operand: Box::new(operand),
                span,
            });
        }
        if self.at(&Tok::LParen) {
            let lp = self.bump().span;
            self.enter(lp)?;
            let c = self.condition(rule)?;
            self.expect(&Tok::RParen)?;
            self.exit();
            return Ok(c);
        }
        self.simple_condition(rule)
    }

    fn simple_condition(&mut self, rule: SemiJoinRule) -> Result<Condition, ParseError> {
        let left = self.field_expr()?;
        let start = left.span().start;
        let t = self.peek().clone();
        let op = match t.kind {
            Tok::Eq => Some(CompareOp::Eq),
            Tok::Ne => Some(CompareOp::Ne),
            Tok::Lt => Some(CompareOp::Lt),
            Tok::Le => Some(CompareOp::Le),
            Tok::Gt => Some(CompareOp::Gt),
            Tok::Ge => Some(CompareOp::Ge),
            _ => None,
        };
        if let Some(op) = op {
            self.bump();
            let value = self.value()?;
            let span = Span::new(start, value.span.end);
            return Ok(Condition::Compare(Comparison {
                left,
                op,
                op_span: t.span,
                value,
                span,
            }));
        }
        if self.is_kw_tok(&t, "LIKE") {
            self.bump();
            let pt = self.peek().clone();
            let Tok::Str(s) = &pt.kind else {
                return Err(self.unexpected(&pt));
            };
            let pattern = like_pattern(s);
            self.bump();
            return Ok(Condition::Like(LikeCondition {
                left,
                pattern,
                pattern_span: pt.span,
                span: Span::new(start, pt.span.end),
            }));
        }
        if self.is_kw_tok(&t, "IN") {
            self.bump();
            return self.in_rhs(left, false, rule);
        }
        if self.is_kw_tok(&t, "NOT") {
            self.bump();
            self.expect_kw("IN")?;
            return self.in_rhs(left, true, rule);
        }
        let includes = self.is_kw_tok(&t, "INCLUDES");
        if includes || self.is_kw_tok(&t, "EXCLUDES") {
            self.bump();
            self.expect(&Tok::LParen)?;
            let mut values = Vec::new();
            loop {
                let vt = self.peek().clone();
                if !matches!(vt.kind, Tok::Str(_)) {
                    return Err(self.unexpected(&vt));
                }
                values.push(self.value()?);
                if self.eat(&Tok::Comma).is_none() {
                    break;
                }
            }
            let end = self.expect(&Tok::RParen)?;
            return Ok(Condition::Includes(IncludesCondition {
                left,
                excludes: !includes,
                values,
                span: Span::new(start, end.end),
            }));
        }
        Err(self.unexpected(&t))
    }

    fn in_rhs(
        &mut self,
        left: FieldExpr,
        negated: bool,
        rule: SemiJoinRule,
    ) -> Result<Condition, ParseError> {
        let start = left.span().start;
        let lp = self.expect(&Tok::LParen)?;
        if self.at_kw("SELECT") {
            if let SemiJoinRule::Forbidden(msg) = rule {
                return Err(ParseError::malformed(msg, self.peek().span));
            }
            self.enter(lp)?;
            let q = self.query(Ctx::SemiJoin)?;
            let end = self.expect(&Tok::RParen)?;
            self.exit();
            return Ok(Condition::SemiJoin(SemiJoin {
                left,
                negated,
                query: Box::new(q),
                span: Span::new(start, end.end),
            }));
        }
        let mut values = Vec::new();
        loop {
            values.push(self.value()?);
            if self.eat(&Tok::Comma).is_none() {
                break;
            }
        }
        let end = self.expect(&Tok::RParen)?;
        Ok(Condition::InList(InList {
            left,
            negated,
            values,
            span: Span::new(start, end.end),
        }))
    }

    // ---------------------------------------------------------------- values

    fn value(&mut self) -> Result<Value, ParseError> {
        let t = self.peek().clone();
        let kind = match &t.kind {
            Tok::Str(s) => {
                if let Some((_, esc)) = s.like_escapes.first() {
                    return Err(ParseError::malformed(
                        format!(
                            "invalid escape sequence '{}' in string literal (only allowed in LIKE patterns)",
                            self.text(*esc)
                        ),
                        *esc,
                    ));
                }
                ValueKind::String(s.value.clone())
            }
            Tok::Number => number_value(self.text(t.span)),
            Tok::Date(d) => ValueKind::Date(*d),
            Tok::DateTime(dt) => ValueKind::DateTime(*dt),
            Tok::Currency => currency_value(self.text(t.span)),
            Tok::Colon => {
                return Err(ParseError::malformed(
                    "unexpected token: ':' (bind variables are only supported in Apex)",
                    t.span,
                ))
            }
            Tok::Ident => return self.word_value(),
            _ => return Err(self.unexpected(&t)),
        };
        self.bump();
        Ok(Value { kind, span: t.span })
    }

    /// `TRUE`, `FALSE`, `NULL`, date literals, `USD5000`.
    fn word_value(&mut self) -> Result<Value, ParseError> {
        let t = self.peek().clone();
        let word = self.text(t.span);
        let simple = if word.eq_ignore_ascii_case("TRUE") {
            Some(ValueKind::Boolean(true))
        } else if word.eq_ignore_ascii_case("FALSE") {
            Some(ValueKind::Boolean(false))
        } else if word.eq_ignore_ascii_case("NULL") {
            Some(ValueKind::Null)
        } else if let Some(d) = DateLiteral::fixed_from_name(word) {
            Some(ValueKind::DateLiteral(d))
        } else if is_currency_word(word) {
            Some(currency_value(word))
        } else {
            None
        };
        if let Some(kind) = simple {
            self.bump();
            return Ok(Value { kind, span: t.span });
        }
        if DateLiteral::is_parameterised_name(word) {
            self.bump();
            self.expect(&Tok::Colon)?;
            let (n, nspan) = self.unsigned_int(word)?;
            let lit = DateLiteral::with_n_from_name(word, n).ok_or_else(|| self.unexpected(&t))?;
            return Ok(Value {
                kind: ValueKind::DateLiteral(lit),
                span: t.span.to(nspan),
            });
        }
        Err(self.unexpected(&t))
    }
}

/// Checks that need the whole query.
fn check_query(q: &Query, ctx: Ctx) -> Result<(), ParseError> {
    // COUNT() must stand alone
    if q.select.len() > 1 {
        for item in &q.select {
            if let SelectItem::Function { call, .. } = item {
                if call.kind == FunctionKind::Count && call.args.is_empty() {
                    return Err(ParseError::malformed(
                        "COUNT() must be the only element in the SELECT list",
                        call.span,
                    ));
                }
            }
        }
    }
    // FIELDS(ALL) / FIELDS(CUSTOM) need LIMIT <= 200
    for item in &q.select {
        if let SelectItem::Fields(f) = item {
            let unbounded = matches!(f.kind, FieldsKind::All | FieldsKind::Custom);
            if unbounded && q.limit.is_none_or(|l| l.value > 200) {
                return Err(ParseError::malformed(
                    "The SOQL FIELDS function must have a LIMIT of at most 200",
                    f.span,
                ));
            }
        }
    }
    // a semi-join selects exactly one field
    if ctx == Ctx::SemiJoin {
        let bad = match q.select.as_slice() {
            [SelectItem::Field(_)] => None,
            [other] => Some(other.span()),
            [_, second, ..] => Some(second.span()),
            [] => Some(q.span),
        };
        if let Some(span) = bad {
            return Err(ParseError::malformed(
                "a semi join sub-select must select exactly one field",
                span,
            ));
        }
    }
    Ok(())
}

/// `USD5000`: three letters followed by digits.
fn is_currency_word(word: &str) -> bool {
    let b = word.as_bytes();
    b.len() > 3
        && b[..3].iter().all(u8::is_ascii_alphabetic)
        && b[3..].iter().all(u8::is_ascii_digit)
}

fn currency_value(text: &str) -> ValueKind {
    let (code, amount) = text.split_at(3.min(text.len()));
    ValueKind::Currency {
        code: code.to_string(),
        amount: amount.to_string(),
    }
}

/// Integer if it fits `i64`, otherwise the text as a decimal (leading `+` dropped).
fn number_value(text: &str) -> ValueKind {
    let text = text.strip_prefix('+').unwrap_or(text);
    if !text.contains('.') {
        if let Ok(v) = text.parse::<i64>() {
            return ValueKind::Integer(v);
        }
    }
    ValueKind::Decimal(text.to_string())
}

/// Splits a decoded string into LIKE pieces; escaped `%`/`_` stay literal.
fn like_pattern(s: &StrLit) -> LikePattern {
    let mut pieces = Vec::new();
    let mut lit = String::new();
    let mut escapes = s.like_escapes.iter().map(|(i, _)| *i).peekable();
    for (i, c) in s.value.char_indices() {
        let escaped = escapes.peek() == Some(&i);
        if escaped {
            escapes.next();
        }
        let wildcard = match c {
            '%' if !escaped => Some(LikePiece::AnyChars),
            '_' if !escaped => Some(LikePiece::AnyChar),
            _ => None,
        };
        match wildcard {
            Some(w) => {
                if !lit.is_empty() {
                    pieces.push(LikePiece::Literal(std::mem::take(&mut lit)));
                }
                pieces.push(w);
            }
            None => lit.push(c),
        }
    }
    if !lit.is_empty() {
        pieces.push(LikePiece::Literal(lit));
    }
    LikePattern { pieces }
}
