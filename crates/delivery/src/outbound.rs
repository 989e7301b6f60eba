//! Outbound Messages in Salesforce's SOAP 1.1 format: the `notifications` envelope (up to 100
//! notifications of one action, each carrying the record's latest state), reading the
//! receiver's `Ack`, and the per-action WSDL receivers are built from.

use model::Value;
use quick_xml::events::Event;

/// One notification of a message.
#[derive(Debug, Clone)]
pub struct Notification {
    /// The notification id (`04l…`, 18 characters), the same on every retry.
    pub id: String,
    /// The record id (18 characters).
    pub record_id: String,
    /// The picked fields' current values (`None`: the record is gone; only its id is sent).
    pub fields: Option<Vec<(String, Value)>>,
}

/// What goes around the notifications.
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    /// The org id (18 characters).
    pub org_id: &'a str,
    /// The org id (15 characters), ending the call-back URLs.
    pub org_id_15: &'a str,
    /// The Outbound Message's id (`04k…`).
    pub action_id: &'a str,
    /// A session for the receiver to call back with, when the action sends one.
    pub session_id: Option<&'a str>,
    /// The server's base URL (`https://host:port`).
    pub base_url: &'a str,
    /// The API version of the call-back URLs (`60.0`).
    pub api_version: &'a str,
    /// The object (`Order`).
    pub object: &'a str,
}

/// Escapes text for XML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The SOAP request for `notifications` (all of `env.object`).
pub fn message(env: &Envelope<'_>, notifications: &[Notification]) -> String {
    let mut x = String::with_capacity(512 + notifications.len() * 256);
    x.push_str(concat!(
        r#"<?xml version="1.0" encoding="UTF-8"?>"#,
        r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" "#,
        r#"xmlns:xsd="http://www.w3.org/2001/XMLSchema" "#,
        r#"xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">"#,
        r#"<soapenv:Body><notifications xmlns="http://soap.sforce.com/2005/09/outbound">"#
    ));
    x.push_str(&format!(
        "<OrganizationId>{}</OrganizationId><ActionId>{}</ActionId>",
        escape(env.org_id),
        escape(env.action_id)
    ));
    match env.session_id {
        Some(s) => x.push_str(&format!("<SessionId>{}</SessionId>", escape(s))),
        None => x.push_str(r#"<SessionId xsi:nil="true"/>"#),
    }
    let base = env.base_url.trim_end_matches('/');
    x.push_str(&format!(
        "<EnterpriseUrl>{b}/services/Soap/c/{v}/{o}</EnterpriseUrl><PartnerUrl>{b}/services/Soap/u/{v}/{o}</PartnerUrl>",
        b = escape(base),
        v = escape(env.api_version),
        o = escape(env.org_id_15)
    ));
    for n in notifications {
        x.push_str(&format!(
            r#"<Notification><Id>{}</Id><sObject xsi:type="sf:{}" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">"#,
            escape(&n.id),
            escape(env.object)
        ));
        x.push_str(&format!("<sf:Id>{}</sf:Id>", escape(&n.record_id)));
        for (name, v) in n.fields.iter().flatten() {
            if name == "Id" {
                continue;
            }
            if v.is_null() {
                x.push_str(&format!(r#"<sf:{name} xsi:nil="true"/>"#));
            } else {
                x.push_str(&format!("<sf:{name}>{}</sf:{name}>", escape(&v.to_text())));
            }
        }
        x.push_str("</sObject></Notification>");
    }
    x.push_str("</notifications></soapenv:Body></soapenv:Envelope>");
    x
}

/// Reads a receiver's reply: `Ok` when it acknowledged (`<Ack>true</Ack>` inside
/// `notificationsResponse` or, as some receivers answer, `notifications`), otherwise why not.
pub fn read_ack(body: &[u8]) -> Result<(), String> {
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut buf = Vec::new();
    let mut path: Vec<Vec<u8>> = Vec::new();
    let mut fault: Option<String> = None;
    let mut in_fault = false;
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) => {
                let name = e.local_name().as_ref().to_vec();
                if name == b"Fault" {
                    in_fault = true;
                    fault.get_or_insert_with(String::new);
                }
                path.push(name);
            }
            Ok(Event::End(_)) => {
                path.pop();
            }
            Ok(Event::Text(t)) => {
                let text = t
                    .xml_content()
                    .map(|c| c.trim().to_string())
                    .unwrap_or_default();
                let here = path.last().map(Vec::as_slice);
                if in_fault && here == Some(b"faultstring") {
                    fault = Some(text);
                } else if here == Some(b"Ack") && !in_fault {
                    let parent = path.len().checked_sub(2).map(|i| path[i].as_slice());
                    if matches!(
                        parent,
                        Some(b"notificationsResponse") | Some(b"notifications")
                    ) {
                        return if text.eq_ignore_ascii_case("true") || text == "1" {
                            Ok(())
                        } else {
                            Err(format!("the receiver answered Ack {text}"))
                        };
                    }
                }
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => return Err(format!("the receiver's reply is not XML: {e}")),
        }
        buf.clear();
    }
    match fault {
        Some(f) if !f.is_empty() => Err(format!("the receiver answered a SOAP fault: {f}")),
        Some(_) => Err("the receiver answered a SOAP fault".into()),
        None => Err("the receiver's reply has no Ack".into()),
    }
}

/// The WSDL describing what an Outbound Message sends, for receiver developers.
pub fn wsdl(object: &str, fields: &[(String, &'static str)], endpoint: &str) -> String {
    let mut elements = String::new();
    for (name, ty) in fields {
        if name == "Id" {
            continue;
        }
        elements.push_str(&format!(
            r#"<element name="{}" nillable="true" minOccurs="0" type="{ty}"/>"#,
            escape(name)
        ));
    }
    let o = escape(object);
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<definitions targetNamespace="http://soap.sforce.com/2005/09/outbound" xmlns="http://schemas.xmlsoap.org/wsdl/" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:tns="http://soap.sforce.com/2005/09/outbound" xmlns:ent="urn:enterprise.soap.sforce.com" xmlns:ens="urn:sobject.enterprise.soap.sforce.com">
 <types>
  <schema elementFormDefault="qualified" xmlns="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:enterprise.soap.sforce.com">
   <simpleType name="ID"><restriction base="xsd:string"><length value="18"/><pattern value="[a-zA-Z0-9]{{18}}"/></restriction></simpleType>
  </schema>
  <schema elementFormDefault="qualified" xmlns="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:sobject.enterprise.soap.sforce.com">
   <import namespace="urn:enterprise.soap.sforce.com"/>
   <complexType name="sObject"><sequence><element name="fieldsToNull" type="xsd:string" nillable="true" minOccurs="0" maxOccurs="unbounded"/><element name="Id" type="ent:ID" nillable="true" minOccurs="0"/></sequence></complexType>
   <complexType name="{o}"><complexContent><extension base="ens:sObject"><sequence>{elements}</sequence></extension></complexContent></complexType>
  </schema>
  <schema elementFormDefault="qualified" xmlns="http://www.w3.org/2001/XMLSchema" targetNamespace="http://soap.sforce.com/2005/09/outbound">
   <import namespace="urn:enterprise.soap.sforce.com"/>
   <import namespace="urn:sobject.enterprise.soap.sforce.com"/>
   <element name="notifications">
    <complexType><sequence>
     <element name="OrganizationId" type="ent:ID"/>
     <element name="ActionId" type="ent:ID"/>
     <element name="SessionId" type="xsd:string" nillable="true"/>
     <element name="EnterpriseUrl" type="xsd:string"/>
     <element name="PartnerUrl" type="xsd:string"/>
     <element name="Notification" maxOccurs="100" type="tns:{o}Notification"/>
    </sequence></complexType>
   </element>
   <complexType name="{o}Notification"><sequence><element name="Id" type="ent:ID"/><element name="sObject" type="ens:{o}"/></sequence></complexType>
   <element name="notificationsResponse"><complexType><sequence><element name="Ack" type="xsd:boolean"/></sequence></complexType></element>
  </schema>
 </types>
 <message name="notificationsRequest"><part element="tns:notifications" name="request"/></message>
 <message name="notificationsResponse"><part element="tns:notificationsResponse" name="response"/></message>
 <portType name="NotificationPort">
  <operation name="notifications"><input message="tns:notificationsRequest"/><output message="tns:notificationsResponse"/></operation>
 </portType>
 <binding name="NotificationBinding" type="tns:NotificationPort">
  <soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
  <operation name="notifications"><soap:operation soapAction=""/><input><soap:body use="literal"/></input><output><soap:body use="literal"/></output></operation>
 </binding>
 <service name="NotificationService">
  <port binding="tns:NotificationBinding" name="Notification"><soap:address location="{endpoint}"/></port>
 </service>
</definitions>
"#,
        endpoint = escape(endpoint)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_ack_shapes_are_accepted_and_everything_else_is_a_failure() {
        let ok1 = br#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound"><Ack>true</Ack></notificationsResponse></soapenv:Body></soapenv:Envelope>"#;
        let ok2 = br#"<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body><tns:notifications xmlns:tns="http://soap.sforce.com/2005/09/outbound"><tns:Ack>true</tns:Ack></tns:notifications></S:Body></S:Envelope>"#;
        assert_eq!(read_ack(ok1), Ok(()));
        assert_eq!(read_ack(ok2), Ok(()));
        let nack = br#"<Envelope><Body><notificationsResponse><Ack>false</Ack></notificationsResponse></Body></Envelope>"#;
        assert!(read_ack(nack).unwrap_err().contains("Ack false"));
        let fault = br#"<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body><e:Fault><faultcode>e:Server</faultcode><faultstring>db down</faultstring></e:Fault></e:Body></e:Envelope>"#;
        assert_eq!(
            read_ack(fault).unwrap_err(),
            "the receiver answered a SOAP fault: db down"
        );
        assert!(read_ack(b"OK").unwrap_err().contains("no Ack"));
        assert!(
            read_ack(b"<a><Ack>true</Ack></a>").is_err(),
            "an Ack elsewhere is not one"
        );
        assert!(read_ack(b"<a><b></a>").is_err());
    }

    #[test]
    fn the_message_carries_every_notification_with_nulls_and_escaping() {
        let env = Envelope {
            org_id: "00D000000000001AAA",
            org_id_15: "00D000000000001",
            action_id: "04k000000000001AAA",
            session_id: None,
            base_url: "https://h:1/",
            api_version: "60.0",
            object: "Account",
        };
        let x = message(
            &env,
            &[
                Notification {
                    id: "04l000000000001AAA".into(),
                    record_id: "001000000000001AAA".into(),
                    fields: Some(vec![
                        ("Name".into(), Value::Text("A & <B>".into())),
                        ("Phone".into(), Value::Null),
                    ]),
                },
                Notification {
                    id: "04l000000000002AAA".into(),
                    record_id: "001000000000002AAA".into(),
                    fields: None,
                },
            ],
        );
        assert!(x.contains("<sf:Name>A &amp; &lt;B&gt;</sf:Name>"));
        assert!(x.contains(r#"<sf:Phone xsi:nil="true"/>"#));
        assert!(x.contains(r#"<SessionId xsi:nil="true"/>"#));
        assert!(
            x.contains("<PartnerUrl>https://h:1/services/Soap/u/60.0/00D000000000001</PartnerUrl>")
        );
        assert_eq!(x.matches("<Notification>").count(), 2);
        assert!(x.contains(r#"<Id>04l000000000002AAA</Id><sObject xsi:type="sf:Account" xmlns:sf="urn:sobject.enterprise.soap.sforce.com"><sf:Id>001000000000002AAA</sf:Id></sObject>"#));
    }
}
