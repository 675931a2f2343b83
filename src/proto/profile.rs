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
