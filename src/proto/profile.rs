//! `V2TimUserFullInfo`: the profile of the logged-in user.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `V2TimUserFullInfo`, with the SDK's field names.
///
/// ```json
/// {"userID":"alice","nickName":"Alice","faceUrl":"https://…/a.png","selfSignature":"hi",
///  "gender":2,"allowType":0,"customInfo":{"Tag_Profile_Custom_Team":"blue"},
///  "role":0,"level":0,"birthday":19900101}
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct UserFullInfo {
    /// The UserID.
    #[serde(rename = "userID")]
    pub user_id: String,
    /// Nickname (`Tag_Profile_IM_Nick`).
    pub nick_name: String,
    /// Avatar URL (`Tag_Profile_IM_Image`).
    pub face_url: String,
    /// Status line (`Tag_Profile_IM_SelfSignature`).
    pub self_signature: String,
    /// 0 unknown, 1 male, 2 female (`Tag_Profile_IM_Gender`).
    pub gender: u8,
    /// 0 anyone may add as friend, 1 needs confirmation, 2 nobody (`Tag_Profile_IM_AllowType`).
    pub allow_type: u8,
    /// Custom fields (`Tag_Profile_Custom_*`), keyed by the full tag.
    pub custom_info: BTreeMap<String, String>,
    /// Role (`Tag_Profile_IM_Role`).
    pub role: u32,
    /// Level (`Tag_Profile_IM_Level`).
    pub level: u32,
    /// Birthday as YYYYMMDD (`Tag_Profile_IM_BirthDay`).
    pub birthday: u32,
}

impl UserFullInfo {
    /// Appends the profile as JSON, byte for byte what `serde_json` writes for it (the
    /// event path's hand-written form; see [`super::json`]).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        use super::json::{write_str, write_u64};
        // Named in full, so a new field cannot be missed here.
        let UserFullInfo {
            user_id,
            nick_name,
            face_url,
            self_signature,
            gender,
            allow_type,
            custom_info,
            role,
            level,
            birthday,
        } = self;
        out.extend_from_slice(b"{\"userID\":");
        write_str(out, user_id);
        out.extend_from_slice(b",\"nickName\":");
        write_str(out, nick_name);
        out.extend_from_slice(b",\"faceUrl\":");
        write_str(out, face_url);
        out.extend_from_slice(b",\"selfSignature\":");
        write_str(out, self_signature);
        out.extend_from_slice(b",\"gender\":");
        write_u64(out, u64::from(*gender));
        out.extend_from_slice(b",\"allowType\":");
        write_u64(out, u64::from(*allow_type));
        out.extend_from_slice(b",\"customInfo\":{");
        for (i, (k, v)) in custom_info.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(out, k);
            out.push(b':');
            write_str(out, v);
        }
        out.extend_from_slice(b"},\"role\":");
        write_u64(out, u64::from(*role));
        out.extend_from_slice(b",\"level\":");
        write_u64(out, u64::from(*level));
        out.extend_from_slice(b",\"birthday\":");
        write_u64(out, u64::from(*birthday));
        out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn info() -> impl Strategy<Value = UserFullInfo> {
        (
            (
                any::<String>(),
                "[ -~\\x00-\\x1f]{0,24}",
                any::<String>(),
                any::<String>(),
            ),
            (
                any::<u8>(),
                any::<u8>(),
                any::<u32>(),
                any::<u32>(),
                any::<u32>(),
            ),
            proptest::collection::btree_map(any::<String>(), "[ -~\\n]{0,12}", 0..5),
        )
            .prop_map(|((u, n, f, s), (g, a, r, l, b), c)| UserFullInfo {
                user_id: u,
                nick_name: n,
                face_url: f,
                self_signature: s,
                gender: g,
                allow_type: a,
                custom_info: c,
                role: r,
                level: l,
                birthday: b,
            })
    }

    proptest! {
        #[test]
        fn the_hand_written_form_is_serdes(i in info()) {
            let mut v = Vec::new();
            i.write_json(&mut v);
            prop_assert_eq!(&v, &serde_json::to_vec(&i).unwrap());
            prop_assert_eq!(serde_json::from_slice::<UserFullInfo>(&v).unwrap(), i);
        }
    }

    #[test]
    fn the_default_and_a_full_profile_write_as_serde_does() {
        let mut full = UserFullInfo {
            user_id: "alice".into(),
            nick_name: "Al\"ice\n".into(),
            face_url: "https://x/a.png".into(),
            self_signature: "é\u{1}".into(),
            gender: 2,
            allow_type: 1,
            role: u32::MAX,
            level: 7,
            birthday: 19_900_101,
            ..Default::default()
        };
        full.custom_info
            .insert("Tag_Profile_Custom_B".into(), "2".into());
        full.custom_info
            .insert("Tag_Profile_Custom_A".into(), "1".into());
        for i in [UserFullInfo::default(), full] {
            let mut v = Vec::new();
            i.write_json(&mut v);
            assert_eq!(v, serde_json::to_vec(&i).unwrap());
        }
    }
}
