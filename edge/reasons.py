"""Stable reason codes with the messages shown on screens and spoken at the gate.

Codes are part of the event schema (`reasons`) and of the server's statistics, so
they never change meaning; new ones may be added. Messages are short enough to read
at a glance and to speak in one breath.
"""

from __future__ import annotations

LANGS = ("zh-CN", "en")

# code: (zh-CN, en)
MESSAGES: dict[str, tuple[str, str]] = {
    "ok": ("请通行", "Please go ahead"),
    # the code itself
    "no_credential": ("请出示通行码", "Please show your pass code"),
    "credential_missing": ("还需出示另一个码", "Another code is required"),
    "unknown_format": ("无法识别的码", "This code is not recognised"),
    "malformed": ("码已损坏或被修改", "This code is damaged or altered"),
    "bad_signature": ("码无效(签名错误)", "Invalid code (bad signature)"),
    "unknown_key": ("码的签发者不受信任", "Code issuer is not trusted"),
    "expired": ("通行证已过期", "Pass has expired"),
    "not_yet_valid": ("通行证尚未生效", "Pass is not valid yet"),
    "revoked": ("通行证已被注销", "Pass has been revoked"),
    "not_in_allowlist": ("证件未登记", "Badge is not registered"),
    "kind_not_allowed": ("此类通行证不能在此通行", "This pass type is not accepted here"),
    "wrong_zone": ("通行证不适用于本卡口", "Pass is not valid for this gate"),
    "outside_window": ("不在允许通行时段", "Outside the permitted hours"),
    "status_yellow": ("健康码黄码,请居家观察", "Yellow status: please stay home"),
    "status_red": ("健康码红码,请联系工作人员", "Red status: please see the staff"),
    "status_unknown": ("健康状态未知,请人工核验", "Health status unknown: manual check"),
    "anti_passback": ("刚刚已通行,请勿重复刷码", "Already passed just now"),
    "household_quota": ("本户外出次数已用完", "Household outing quota used up"),
    "outing_overdue": ("外出超时,请登记", "Outing took too long: please register"),
    # trust material
    "status_list_stale": ("状态名单过期,请人工核验", "Status list out of date: manual check"),
    "status_list_missing": ("无状态名单,请人工核验", "No status list: manual check"),
    "trust_list_stale": ("信任名单过期,请人工核验", "Trust list out of date: manual check"),
    "no_trust": ("未配置信任密钥", "No trusted keys configured"),
    # EU DCC steps
    "dcc_prefix": ("非欧盟证书格式", "Not an EU certificate (prefix)"),
    "dcc_base45": ("证书编码错误", "Certificate encoding is broken"),
    "dcc_zlib": ("证书压缩数据错误", "Certificate compression is broken"),
    "dcc_cose": ("证书结构错误", "Certificate structure is broken"),
    "dcc_kid": ("证书签发者未知", "Certificate signer is unknown"),
    "dcc_signature": ("证书签名无效", "Certificate signature is invalid"),
    "dcc_cwt": ("证书内容结构错误", "Certificate content is malformed"),
    "dcc_time": ("证书已过期或尚未生效", "Certificate expired or not yet valid"),
    "dcc_schema": ("证书内容不符合规范", "Certificate content is invalid"),
    "dcc_value_set": ("证书含未知取值", "Certificate has unknown values"),
    "dcc_key_usage": ("签发者无权签发此类证书", "Signer may not issue this certificate type"),
    "dcc_issuer": ("证书签发国与签发者不符", "Certificate country does not match its signer"),
    # temperature
    "fever": ("体温异常,请到复测点", "High temperature: please go to the recheck point"),
    "temperature_recheck": ("请重新测温", "Please measure again"),
    "temperature_too_low": ("请靠近测温", "Please come closer to measure"),
    "temperature_invalid": ("测温无效,请重新测温", "Reading invalid: please measure again"),
    "thermometer_warming_up": ("测温仪预热中,请稍候", "Thermometer warming up: please wait"),
    "no_temperature": ("请测量体温", "Please measure your temperature"),
    # mask (attended gates)
    "mask_unconfirmed": ("请工作人员确认佩戴口罩", "Staff: please confirm the mask"),
    "no_mask": ("请佩戴口罩", "Please wear a mask"),
    # faults
    "thermometer_silent": ("测温仪无响应,请人工处理", "Thermometer not responding: manual check"),
    "camera_stalled": ("摄像头故障,请人工处理", "Camera fault: manual check"),
    "clock_unset": ("时钟未校准,请人工处理", "Clock not set: manual check"),
    "fault": ("设备故障,请人工处理", "Device fault: manual check"),
}


def message(code: str, lang: str = "zh-CN") -> str:
    """The screen/voice message for a reason code; unknown codes fall back to a generic text."""
    zh, en = MESSAGES.get(code, MESSAGES["fault"] if code.endswith(("_silent", "_stalled", "_fault")) else
                          ("请人工核验(" + code + ")", "Manual check needed (" + code + ")"))
    return en if lang.lower().startswith("en") else zh


def is_known(code: str) -> bool:
    return code in MESSAGES
