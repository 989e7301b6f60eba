//! The standard objects every org starts with, their common fields, and the system fields shared by
//! all objects.

use crate::field::{Access, DefaultValue, DeleteRule, Derived, FieldDef, FieldType, PicklistValue};
use crate::schema::{Capabilities, ObjectDef, ObjectKind};
use crate::KeyPrefix;

fn text(name: &str, label: &str, len: u32) -> FieldDef {
    let mut f = FieldDef::new(name, label, FieldType::String);
    f.length = len;
    f
}

fn typed(name: &str, label: &str, ty: FieldType) -> FieldDef {
    FieldDef::new(name, label, ty)
}

fn required(mut f: FieldDef) -> FieldDef {
    f.required = true;
    f.permissionable = false;
    f
}

fn read_only(mut f: FieldDef) -> FieldDef {
    f.access = Access::System;
    f
}

fn number(name: &str, label: &str, ty: FieldType, precision: u32, scale: u32) -> FieldDef {
    let mut f = FieldDef::new(name, label, ty);
    f.precision = precision;
    f.scale = scale;
    f
}

/// A picklist; the first value marked with `*` is the default.
fn picklist(name: &str, label: &str, values: &[&str]) -> FieldDef {
    let mut f = FieldDef::new(name, label, FieldType::Picklist);
    f.picklist = values
        .iter()
        .map(|v| {
            let (value, default) = match v.strip_prefix('*') {
                Some(rest) => (rest, true),
                None => (*v, false),
            };
            PicklistValue {
                value: value.to_string(),
                label: value.to_string(),
                default,
                active: true,
            }
        })
        .collect();
    if let Some(d) = f.picklist.iter().find(|p| p.default) {
        f.default = Some(DefaultValue::Text(d.value.clone()));
    }
    f
}

/// A lookup to `target`, named `rel` from this side and `child_rel` from the parent's side.
fn lookup(name: &str, label: &str, target: &str, rel: &str, child_rel: Option<&str>) -> FieldDef {
    let mut f = FieldDef::new(name, label, FieldType::Reference);
    f.reference_to = Some(target.to_string());
    f.relationship_name = Some(rel.to_string());
    f.child_relationship_name = child_rel.map(str::to_string);
    f
}

/// Deleting the parent deletes this record too (Contacts and Opportunities go with their Account).
fn cascade(mut f: FieldDef) -> FieldDef {
    f.delete_rule = DeleteRule::Cascade;
    f
}

/// The parent cannot be deleted while this record points at it (an Account with Orders).
fn restrict(mut f: FieldDef) -> FieldDef {
    f.delete_rule = DeleteRule::Restrict;
    f
}

fn name_field(mut f: FieldDef) -> FieldDef {
    f.name_field = true;
    f
}

fn full_name() -> FieldDef {
    let mut f = text("Name", "Full Name", 121);
    f.access = Access::Derived;
    f.derived = Some(Derived::FullName);
    f.name_field = true;
    f.permissionable = false;
    f
}

fn auto_number(name: &str, label: &str, digits: usize, start: u64) -> FieldDef {
    let mut f = text(name, label, 30);
    f.access = Access::Derived;
    f.derived = Some(Derived::AutoNumber {
        format: format!("{{{}}}", "0".repeat(digits)),
        start,
    });
    f.name_field = true;
    f.permissionable = false;
    f
}

fn address(prefix: &str, label: &str) -> Vec<FieldDef> {
    let mut street = typed(
        &format!("{prefix}Street"),
        &format!("{label} Street"),
        FieldType::TextArea,
    );
    street.length = 255;
    vec![
        street,
        text(&format!("{prefix}City"), &format!("{label} City"), 40),
        text(
            &format!("{prefix}State"),
            &format!("{label} State/Province"),
            80,
        ),
        text(
            &format!("{prefix}PostalCode"),
            &format!("{label} Zip/Postal Code"),
            20,
        ),
        text(&format!("{prefix}Country"), &format!("{label} Country"), 80),
    ]
}

fn description() -> FieldDef {
    typed("Description", "Description", FieldType::LongTextArea)
}

/// The system fields every object carries: Id first, audit fields last.
/// `owner` adds OwnerId (absent on User and on master-detail children).
pub fn system_fields(owner: bool) -> (Vec<FieldDef>, Vec<FieldDef>) {
    let mut id = FieldDef::new("Id", "Record ID", FieldType::Id);
    id.access = Access::System;
    id.permissionable = false;
    let head = vec![id];
    let mut tail = Vec::new();
    if owner {
        let mut o = lookup("OwnerId", "Owner ID", "User", "Owner", None);
        o.required = true;
        o.permissionable = false;
        o.default = Some(DefaultValue::CurrentUser);
        tail.push(o);
    }
    let mut deleted = FieldDef::new("IsDeleted", "Deleted", FieldType::Boolean);
    deleted.access = Access::System;
    deleted.permissionable = false;
    tail.push(deleted);
    for (n, l) in [
        ("CreatedDate", "Created Date"),
        ("LastModifiedDate", "Last Modified Date"),
        ("SystemModstamp", "System Modstamp"),
    ] {
        let mut f = FieldDef::new(n, l, FieldType::DateTime);
        f.access = Access::System;
        f.permissionable = false;
        tail.push(f);
    }
    for (n, l, r) in [
        ("CreatedById", "Created By ID", "CreatedBy"),
        ("LastModifiedById", "Last Modified By ID", "LastModifiedBy"),
    ] {
        let mut f = lookup(n, l, "User", r, None);
        f.access = Access::System;
        f.permissionable = false;
        tail.push(f);
    }
    (head, tail)
}

/// The standard fields of every platform event: `ReplayId`, `CreatedDate`, `CreatedById` and
/// `EventUuid`, all set by the system.
pub fn event_fields() -> Vec<FieldDef> {
    let mut replay = FieldDef::new("ReplayId", "Replay ID", FieldType::String);
    replay.length = 255;
    let mut created = FieldDef::new("CreatedDate", "Created Date", FieldType::DateTime);
    created.length = 0;
    let by = lookup("CreatedById", "Created By ID", "User", "CreatedBy", None);
    let mut uuid = FieldDef::new("EventUuid", "Event UUID", FieldType::String);
    uuid.length = 36;
    let mut out = vec![replay, created, by, uuid];
    for f in &mut out {
        f.access = Access::System;
        f.permissionable = false;
        f.custom = false;
    }
    out
}

/// Assembles an object from its own fields plus the system fields.
pub fn object_with_system_fields(
    name: &str,
    label: &str,
    plural: &str,
    prefix: &str,
    kind: ObjectKind,
    owner: bool,
    fields: Vec<FieldDef>,
) -> ObjectDef {
    let (mut all, tail) = system_fields(owner);
    all.extend(fields);
    all.extend(tail);
    let prefix = KeyPrefix::parse(prefix).expect("valid prefix");
    ObjectDef::new(name, label, plural, prefix, kind, all)
}

fn std_object(
    name: &str,
    label: &str,
    plural: &str,
    prefix: &str,
    owner: bool,
    fields: Vec<FieldDef>,
) -> ObjectDef {
    object_with_system_fields(
        name,
        label,
        plural,
        prefix,
        ObjectKind::Standard,
        owner,
        fields,
    )
}

const INDUSTRIES: &[&str] = &[
    "Agriculture",
    "Apparel",
    "Banking",
    "Biotechnology",
    "Chemicals",
    "Communications",
    "Construction",
    "Consulting",
    "Education",
    "Electronics",
    "Energy",
    "Engineering",
    "Entertainment",
    "Environmental",
    "Finance",
    "Food & Beverage",
    "Government",
    "Healthcare",
    "Hospitality",
    "Insurance",
    "Machinery",
    "Manufacturing",
    "Media",
    "Not For Profit",
    "Recreation",
    "Retail",
    "Shipping",
    "Technology",
    "Telecommunications",
    "Transportation",
    "Utilities",
    "Other",
];
const LEAD_SOURCES: &[&str] = &[
    "Web",
    "Phone Inquiry",
    "Partner Referral",
    "Purchased List",
    "Other",
];
const RATINGS: &[&str] = &["Hot", "Warm", "Cold"];
const STAGES: &[&str] = &[
    "Prospecting",
    "Qualification",
    "Needs Analysis",
    "Value Proposition",
    "Id. Decision Makers",
    "Perception Analysis",
    "Proposal/Price Quote",
    "Negotiation/Review",
    "Closed Won",
    "Closed Lost",
];

/// Built-in profile names.
pub const PROFILE_ADMIN: &str = "System Administrator";
/// The profile for ordinary users: CRUD on the standard business objects.
pub const PROFILE_STANDARD: &str = "Standard User";
/// The profile that can only read.
pub const PROFILE_READ_ONLY: &str = "Read Only";

/// The standard business objects users work with (the ones a "Standard User" may edit).
pub const BUSINESS_OBJECTS: &[&str] = &[
    "Account",
    "Contact",
    "Lead",
    "Opportunity",
    "Case",
    "Order",
    "Asset",
    "Product2",
];

/// Every standard object of a new org.
pub fn standard_objects() -> Vec<ObjectDef> {
    let mut objects = Vec::new();

    let mut account = vec![
        required(name_field(text("Name", "Account Name", 255))),
        text("AccountNumber", "Account Number", 40),
        picklist(
            "Type",
            "Account Type",
            &[
                "Prospect",
                "Customer - Direct",
                "Customer - Channel",
                "Channel Partner / Reseller",
                "Installation Partner",
                "Technology Partner",
                "Other",
            ],
        ),
        picklist("Industry", "Industry", INDUSTRIES),
        number(
            "AnnualRevenue",
            "Annual Revenue",
            FieldType::Currency,
            18,
            0,
        ),
        number("NumberOfEmployees", "Employees", FieldType::Int, 8, 0),
        typed("Phone", "Account Phone", FieldType::Phone),
        typed("Fax", "Account Fax", FieldType::Phone),
        typed("Website", "Website", FieldType::Url),
        picklist("Rating", "Account Rating", RATINGS),
        picklist(
            "Ownership",
            "Ownership",
            &["Public", "Private", "Subsidiary", "Other"],
        ),
        picklist("AccountSource", "Account Source", LEAD_SOURCES),
        text("Site", "Account Site", 80),
        text("Sic", "SIC Code", 20),
        text("TickerSymbol", "Ticker Symbol", 20),
        lookup(
            "ParentId",
            "Parent Account ID",
            "Account",
            "Parent",
            Some("ChildAccounts"),
        ),
        description(),
    ];
    account.extend(address("Billing", "Billing"));
    account.extend(address("Shipping", "Shipping"));
    objects.push(std_object(
        "Account", "Account", "Accounts", "001", true, account,
    ));

    let mut contact = vec![
        picklist(
            "Salutation",
            "Salutation",
            &["Mr.", "Ms.", "Mrs.", "Dr.", "Prof."],
        ),
        text("FirstName", "First Name", 40),
        required(text("LastName", "Last Name", 80)),
        full_name(),
        cascade(lookup(
            "AccountId",
            "Account ID",
            "Account",
            "Account",
            Some("Contacts"),
        )),
        typed("Email", "Email", FieldType::Email),
        typed("Phone", "Business Phone", FieldType::Phone),
        typed("MobilePhone", "Mobile Phone", FieldType::Phone),
        typed("HomePhone", "Home Phone", FieldType::Phone),
        typed("OtherPhone", "Other Phone", FieldType::Phone),
        typed("Fax", "Business Fax", FieldType::Phone),
        text("Title", "Title", 128),
        text("Department", "Department", 80),
        typed("Birthdate", "Birthdate", FieldType::Date),
        picklist("LeadSource", "Lead Source", LEAD_SOURCES),
        text("AssistantName", "Assistant's Name", 40),
        lookup("ReportsToId", "Reports To ID", "Contact", "ReportsTo", None),
        typed("HasOptedOutOfEmail", "Email Opt Out", FieldType::Boolean),
        typed("DoNotCall", "Do Not Call", FieldType::Boolean),
        description(),
    ];
    contact.extend(address("Mailing", "Mailing"));
    contact.extend(address("Other", "Other"));
    objects.push(std_object(
        "Contact", "Contact", "Contacts", "003", true, contact,
    ));

    let mut lead = vec![
        picklist(
            "Salutation",
            "Salutation",
            &["Mr.", "Ms.", "Mrs.", "Dr.", "Prof."],
        ),
        text("FirstName", "First Name", 40),
        required(text("LastName", "Last Name", 80)),
        full_name(),
        required(text("Company", "Company", 255)),
        text("Title", "Title", 128),
        typed("Email", "Email", FieldType::Email),
        typed("Phone", "Phone", FieldType::Phone),
        typed("MobilePhone", "Mobile Phone", FieldType::Phone),
        typed("Website", "Website", FieldType::Url),
        required(picklist(
            "Status",
            "Status",
            &[
                "*Open - Not Contacted",
                "Working - Contacted",
                "Closed - Converted",
                "Closed - Not Converted",
            ],
        )),
        picklist("LeadSource", "Lead Source", LEAD_SOURCES),
        picklist("Industry", "Industry", INDUSTRIES),
        picklist("Rating", "Rating", RATINGS),
        number(
            "AnnualRevenue",
            "Annual Revenue",
            FieldType::Currency,
            18,
            0,
        ),
        number("NumberOfEmployees", "Employees", FieldType::Int, 8, 0),
        read_only(typed("IsConverted", "Converted", FieldType::Boolean)),
        read_only(typed("ConvertedDate", "Converted Date", FieldType::Date)),
        description(),
    ];
    lead.extend(address("", ""));
    for f in lead.iter_mut() {
        // The address fields of a lead are plain `Street`, `City`, …
        if f.label.starts_with(' ') {
            f.label = f.label.trim().to_string();
        }
    }
    objects.push(std_object("Lead", "Lead", "Leads", "00Q", true, lead));

    let mut is_closed = typed("IsClosed", "Closed", FieldType::Boolean);
    is_closed.access = Access::Derived;
    is_closed.derived = Some(Derived::PicklistIn {
        source: "StageName".into(),
        values: vec!["Closed Won".into(), "Closed Lost".into()],
    });
    let mut is_won = typed("IsWon", "Won", FieldType::Boolean);
    is_won.access = Access::Derived;
    is_won.derived = Some(Derived::PicklistIn {
        source: "StageName".into(),
        values: vec!["Closed Won".into()],
    });
    let opportunity = vec![
        required(name_field(text("Name", "Name", 120))),
        cascade(lookup(
            "AccountId",
            "Account ID",
            "Account",
            "Account",
            Some("Opportunities"),
        )),
        number("Amount", "Amount", FieldType::Currency, 18, 2),
        required(typed("CloseDate", "Close Date", FieldType::Date)),
        required(picklist("StageName", "Stage", STAGES)),
        number("Probability", "Probability (%)", FieldType::Percent, 3, 0),
        picklist(
            "Type",
            "Opportunity Type",
            &[
                "Existing Customer - Upgrade",
                "Existing Customer - Replacement",
                "Existing Customer - Downgrade",
                "New Customer",
            ],
        ),
        picklist("LeadSource", "Lead Source", LEAD_SOURCES),
        text("NextStep", "Next Step", 255),
        picklist(
            "ForecastCategoryName",
            "Forecast Category",
            &["Omitted", "Pipeline", "Best Case", "Commit", "Closed"],
        ),
        is_closed,
        is_won,
        description(),
    ];
    objects.push(std_object(
        "Opportunity",
        "Opportunity",
        "Opportunities",
        "006",
        true,
        opportunity,
    ));

    let mut case_closed = typed("IsClosed", "Closed", FieldType::Boolean);
    case_closed.access = Access::Derived;
    case_closed.derived = Some(Derived::PicklistIn {
        source: "Status".into(),
        values: vec!["Closed".into()],
    });
    let case = vec![
        auto_number("CaseNumber", "Case Number", 8, 1000),
        text("Subject", "Subject", 255),
        picklist(
            "Status",
            "Status",
            &["*New", "Working", "Escalated", "Closed"],
        ),
        picklist("Priority", "Priority", &["High", "*Medium", "Low"]),
        picklist("Origin", "Case Origin", &["Phone", "Email", "Web"]),
        picklist(
            "Type",
            "Case Type",
            &[
                "Mechanical",
                "Electrical",
                "Electronic",
                "Structural",
                "Other",
            ],
        ),
        picklist(
            "Reason",
            "Case Reason",
            &[
                "Installation",
                "Equipment Complexity",
                "Performance",
                "Breakdown",
                "Equipment Design",
                "Feedback",
                "Other",
            ],
        ),
        lookup(
            "AccountId",
            "Account ID",
            "Account",
            "Account",
            Some("Cases"),
        ),
        lookup(
            "ContactId",
            "Contact ID",
            "Contact",
            "Contact",
            Some("Cases"),
        ),
        lookup("AssetId", "Asset ID", "Asset", "Asset", Some("Cases")),
        lookup("ParentId", "Parent Case ID", "Case", "Parent", None),
        text("SuppliedName", "Name", 80),
        typed("SuppliedEmail", "Email Address", FieldType::Email),
        text("SuppliedPhone", "Phone", 40),
        text("SuppliedCompany", "Company", 80),
        case_closed,
        typed("IsEscalated", "Escalated", FieldType::Boolean),
        read_only(typed("ClosedDate", "Closed Date", FieldType::DateTime)),
        description(),
    ];
    objects.push(std_object("Case", "Case", "Cases", "500", true, case));

    let mut order = vec![
        auto_number("OrderNumber", "Order Number", 8, 100),
        text("Name", "Order Name", 80),
        restrict(required(lookup(
            "AccountId",
            "Account ID",
            "Account",
            "Account",
            Some("Orders"),
        ))),
        required(picklist("Status", "Status", &["*Draft", "Activated"])),
        required(typed("EffectiveDate", "Order Start Date", FieldType::Date)),
        typed("EndDate", "Order End Date", FieldType::Date),
        picklist("Type", "Order Type", &["New", "Renewal", "Upgrade"]),
        text("PoNumber", "PO Number", 80),
        typed("PoDate", "PO Date", FieldType::Date),
        read_only(number(
            "TotalAmount",
            "Order Amount",
            FieldType::Currency,
            18,
            2,
        )),
        description(),
    ];
    order.extend(address("Billing", "Billing"));
    order.extend(address("Shipping", "Shipping"));
    objects.push(std_object("Order", "Order", "Orders", "801", true, order));

    let asset = vec![
        required(name_field(text("Name", "Asset Name", 255))),
        lookup(
            "AccountId",
            "Account ID",
            "Account",
            "Account",
            Some("Assets"),
        ),
        lookup(
            "ContactId",
            "Contact ID",
            "Contact",
            "Contact",
            Some("Assets"),
        ),
        lookup(
            "Product2Id",
            "Product ID",
            "Product2",
            "Product2",
            Some("Assets"),
        ),
        text("SerialNumber", "Serial Number", 80),
        picklist(
            "Status",
            "Status",
            &[
                "Purchased",
                "Shipped",
                "Installed",
                "Registered",
                "Obsolete",
            ],
        ),
        number("Quantity", "Quantity", FieldType::Double, 12, 2),
        number("Price", "Price", FieldType::Currency, 18, 2),
        typed("PurchaseDate", "Purchase Date", FieldType::Date),
        typed("InstallDate", "Install Date", FieldType::Date),
        typed("UsageEndDate", "Usage End Date", FieldType::Date),
        typed(
            "IsCompetitorProduct",
            "Competitor Asset",
            FieldType::Boolean,
        ),
        description(),
    ];
    objects.push(std_object("Asset", "Asset", "Assets", "02i", true, asset));

    let mut ext = text("ExternalId", "External ID", 255);
    ext.external_id = true;
    let product = vec![
        required(name_field(text("Name", "Product Name", 255))),
        text("ProductCode", "Product Code", 255),
        picklist("Family", "Product Family", &["None"]),
        typed("IsActive", "Active", FieldType::Boolean),
        text("QuantityUnitOfMeasure", "Quantity Unit Of Measure", 255),
        text("StockKeepingUnit", "Product SKU", 180),
        ext,
        typed("DisplayUrl", "Display URL", FieldType::Url),
        description(),
    ];
    objects.push(std_object(
        "Product2", "Product", "Products", "01t", true, product,
    ));

    let mut username = required(text("Username", "Username", 80));
    username.unique = true;
    let mut nickname = text("CommunityNickname", "Nickname", 40);
    nickname.unique = true;
    let mut is_active = typed("IsActive", "Active", FieldType::Boolean);
    is_active.default = Some(DefaultValue::Bool(true));
    let mut user_type = text("UserType", "User Type", 40);
    user_type.access = Access::System;
    let mut last_login = typed("LastLoginDate", "Last Login", FieldType::DateTime);
    last_login.access = Access::System;
    let mut profile = required(lookup(
        "ProfileId",
        "Profile ID",
        "Profile",
        "Profile",
        Some("Users"),
    ));
    profile.permissionable = false;
    let mut tz = required(text("TimeZoneSidKey", "Time Zone", 40));
    tz.default = Some(DefaultValue::Text("America/Los_Angeles".into()));
    let mut locale = required(text("LocaleSidKey", "Locale", 40));
    locale.default = Some(DefaultValue::Text("en_US".into()));
    let mut enc = required(text("EmailEncodingKey", "Email Encoding", 40));
    enc.default = Some(DefaultValue::Text("UTF-8".into()));
    let mut lang = required(text("LanguageLocaleKey", "Language", 40));
    lang.default = Some(DefaultValue::Text("en_US".into()));
    let user = vec![
        username,
        text("FirstName", "First Name", 40),
        required(text("LastName", "Last Name", 80)),
        full_name(),
        required(typed("Email", "Email", FieldType::Email)),
        required(text("Alias", "Alias", 8)),
        nickname,
        is_active,
        profile,
        tz,
        locale,
        enc,
        lang,
        text("Title", "Title", 80),
        text("Department", "Department", 80),
        text("CompanyName", "Company Name", 80),
        typed("Phone", "Phone", FieldType::Phone),
        typed("MobilePhone", "Mobile", FieldType::Phone),
        lookup("ManagerId", "Manager ID", "User", "Manager", None),
        user_type,
        last_login,
    ];
    let mut user_obj = std_object("User", "User", "Users", "005", false, user);
    user_obj.caps.deletable = false;
    user_obj.caps.undeletable = false;
    objects.push(user_obj);

    let profile_fields = vec![
        required(name_field(text("Name", "Name", 255))),
        text("UserType", "User License", 40),
        typed("Description", "Description", FieldType::TextArea),
    ];
    let mut profile_obj = std_object(
        "Profile",
        "Profile",
        "Profiles",
        "00e",
        false,
        profile_fields,
    );
    profile_obj.caps = Capabilities::READ_ONLY;
    objects.push(profile_obj);

    let mut ps_name = required(text("Name", "Name", 80));
    ps_name.unique = true;
    let mut owned = typed(
        "IsOwnedByProfile",
        "Is Owned By Profile",
        FieldType::Boolean,
    );
    owned.access = Access::System;
    let mut ps_profile = lookup("ProfileId", "Profile ID", "Profile", "Profile", None);
    ps_profile.access = Access::System;
    let mut ps_fields = vec![
        ps_name,
        required(name_field(text("Label", "Label", 80))),
        typed("Description", "Description", FieldType::TextArea),
        owned,
        ps_profile,
    ];
    for (n, l) in [
        ("PermissionsModifyAllData", "Modify All Data"),
        ("PermissionsViewAllData", "View All Data"),
        ("PermissionsApiEnabled", "API Enabled"),
        ("PermissionsCustomizeApplication", "Customize Application"),
        ("PermissionsManageUsers", "Manage Users"),
    ] {
        ps_fields.push(typed(n, l, FieldType::Boolean));
    }
    objects.push(std_object(
        "PermissionSet",
        "Permission Set",
        "Permission Sets",
        "0PS",
        false,
        ps_fields,
    ));

    let mut assignee = required(lookup(
        "AssigneeId",
        "Assignee ID",
        "User",
        "Assignee",
        Some("PermissionSetAssignments"),
    ));
    assignee.access = Access::CreateOnly;
    let mut assigned = required(lookup(
        "PermissionSetId",
        "Permission Set ID",
        "PermissionSet",
        "PermissionSet",
        Some("Assignments"),
    ));
    assigned.access = Access::CreateOnly;
    assigned.delete_rule = DeleteRule::Cascade;
    objects.push(std_object(
        "PermissionSetAssignment",
        "Permission Set Assignment",
        "Permission Set Assignments",
        "0Pa",
        false,
        vec![assignee, assigned],
    ));

    let mut op_parent = required(lookup(
        "ParentId",
        "Parent ID",
        "PermissionSet",
        "Parent",
        Some("ObjectPerms"),
    ));
    op_parent.access = Access::CreateOnly;
    op_parent.delete_rule = DeleteRule::Cascade;
    let mut op_type = required(text("SobjectType", "Sobject Type Name", 80));
    op_type.access = Access::CreateOnly;
    let mut op_fields = vec![op_parent, op_type];
    for (n, l) in [
        ("PermissionsRead", "Read"),
        ("PermissionsCreate", "Create"),
        ("PermissionsEdit", "Edit"),
        ("PermissionsDelete", "Delete"),
        ("PermissionsViewAllRecords", "View All Records"),
        ("PermissionsModifyAllRecords", "Modify All Records"),
    ] {
        op_fields.push(typed(n, l, FieldType::Boolean));
    }
    objects.push(std_object(
        "ObjectPermissions",
        "Object Permissions",
        "Object Permissions",
        "110",
        false,
        op_fields,
    ));

    let mut fp_parent = required(lookup(
        "ParentId",
        "Parent ID",
        "PermissionSet",
        "Parent",
        Some("FieldPerms"),
    ));
    fp_parent.access = Access::CreateOnly;
    fp_parent.delete_rule = DeleteRule::Cascade;
    let mut fp_type = required(text("SobjectType", "Sobject Type Name", 80));
    fp_type.access = Access::CreateOnly;
    let mut fp_field = required(text("Field", "Field Name", 255));
    fp_field.access = Access::CreateOnly;
    let fp_fields = vec![
        fp_parent,
        fp_type,
        fp_field,
        typed("PermissionsRead", "Read Access", FieldType::Boolean),
        typed("PermissionsEdit", "Edit Access", FieldType::Boolean),
    ];
    objects.push(std_object(
        "FieldPermissions",
        "Field Permissions",
        "Field Permissions",
        "01k",
        false,
        fp_fields,
    ));

    let mut org_fields = vec![
        required(name_field(text("Name", "Name", 80))),
        typed("IsSandbox", "Is Sandbox", FieldType::Boolean),
        text("OrganizationType", "Edition", 40),
        text("InstanceName", "Instance Name", 5),
        text("NamespacePrefix", "Namespace Prefix", 15),
        text("DefaultLocaleSidKey", "Locale", 40),
        text("TimeZoneSidKey", "Default Time Zone", 40),
        text("LanguageLocaleKey", "Language", 40),
    ];
    for f in org_fields.iter_mut() {
        f.access = Access::System;
    }
    let mut org = std_object(
        "Organization",
        "Organization",
        "Organizations",
        "00D",
        false,
        org_fields,
    );
    org.caps = Capabilities::READ_ONLY;
    objects.push(org);

    objects.push(push_topic());
    objects
}

/// `PushTopic`: a Streaming API channel (`/topic/Name`) defined by a SOQL query.
fn push_topic() -> ObjectDef {
    let flag = |name: &str, label: &str| {
        let mut f = typed(name, label, FieldType::Boolean);
        f.default = Some(DefaultValue::Bool(true));
        f
    };
    let mut name = required(name_field(text("Name", "Topic Name", 25)));
    name.unique = true;
    let mut notify_for_fields = picklist(
        "NotifyForFields",
        "Notify For Fields",
        &["All", "*Referenced", "Select", "Where"],
    );
    notify_for_fields.restricted_picklist = true;
    let fields = vec![
        name,
        required(text("Query", "SOQL Query", 1300)),
        required(number(
            "ApiVersion",
            "API Version",
            FieldType::Double,
            18,
            1,
        )),
        flag("IsActive", "Is Active"),
        flag("NotifyForOperationCreate", "Notify For Operation Create"),
        flag("NotifyForOperationUpdate", "Notify For Operation Update"),
        flag("NotifyForOperationDelete", "Notify For Operation Delete"),
        flag(
            "NotifyForOperationUndelete",
            "Notify For Operation Undelete",
        ),
        notify_for_fields,
        text("Description", "Description", 400),
    ];
    std_object(
        "PushTopic",
        "Push Topic",
        "Push Topics",
        "0IF",
        false,
        fields,
    )
}
