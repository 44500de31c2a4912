"""Dashboard texts in zh-CN and en (chosen by ?lang=, a cookie, then Accept-Language)."""

from __future__ import annotations

LANGUAGES = ("zh-CN", "en")

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "title": "checkgate", "overview": "Overview", "gates": "Gates", "events": "Event log",
        "passes": "Passes", "status": "Status list", "report": "Daily report", "logout": "Log out",
        "login": "Log in", "username": "Username", "password": "Password", "latest_events": "Latest events",
        "gate": "Gate", "time": "Decided at", "received": "Received", "topic": "Topic", "local_list": "local file (unsigned)", "outcome": "Outcome", "reasons": "Reasons",
        "subject": "Subject", "temperature": "Temp. °C", "seq": "Seq", "late": "late",
        "today": "Today", "total": "Total", "pass": "pass", "deny": "deny", "retry": "retry", "manual": "manual",
        "none": "other", "live_alerts": "Live alerts", "no_alerts": "No alerts so far.", "print_cards": "Print all cards", "trust_list": "Trust list",
        "published_documents": "Published control documents", "doc_type": "Document", "doc_target": "Gates",
        "published_at": "Published", "published_by": "By", "updated_at": "Updated", "source": "Source",
        "no_documents": "Nothing published from this server yet.",
        "no_status_entries": "No yellow or red subjects: everyone not listed is green. Import a CSV to add some.",
        "no_passes": "No passes issued here yet: issue one above or import a CSV.",
        "online": "online", "offline": "offline", "stale": "stale", "unknown": "unknown",
        "last_seen": "Last seen", "health": "Health", "queue": "Queue", "missing": "Missing seq",
        "lists": "List versions", "filter": "Filter", "export_csv": "Export CSV", "next_page": "Older →",
        "since": "From", "until": "To", "any": "any", "by_reason": "Denials and re-checks by reason",
        "per_hour": "Per hour (all gates)", "dead_letters": "Rejected messages",
        "issue_pass": "Issue a pass", "name": "Name", "id_number": "ID number", "kind": "Kind",
        "zones": "Zones", "expires": "Expires", "issue": "Issue", "revoke": "Revoke", "revoked": "revoked",
        "import_csv": "Import CSV", "card": "Card", "publish": "Sign and publish", "version": "Version",
        "colour": "Status", "print": "Print", "date": "Date", "fever": "Fever", "report_title":
        "Checkpoint daily report", "people": "People screened", "passed": "Passed", "denied": "Denied",
        "rechecks": "Re-checks", "manual_checks": "Manual checks", "signature": "Person in charge",
        "gaps": "Gaps", "household": "Household", "phone": "Phone", "upload": "Upload",
        "audit": "Audit log", "role": "Role", "bad_login": "Wrong username or password.",
        "status_help": "CSV columns: subject,status (green, yellow or red).",
        "passes_help": "CSV columns: subject,name,id_number,kind,zones,expires (YYYY-MM-DD).",
        "steward_note": "Steward view: personal fields are hidden.",
        "red": "Red code", "yellow": "Yellow code",
    },
    "zh-CN": {
        "title": "卡口管理", "overview": "总览", "gates": "卡口设备", "events": "通行记录",
        "passes": "通行证", "status": "健康码名单", "report": "日报", "logout": "退出",
        "login": "登录", "username": "用户名", "password": "密码", "latest_events": "最新记录",
        "gate": "卡口", "time": "判定时间", "received": "接收时间", "topic": "主题", "local_list": "本地文件（未签名）", "outcome": "结果", "reasons": "原因",
        "subject": "人员编号", "temperature": "体温 °C", "seq": "序号", "late": "补传",
        "today": "今日", "total": "合计", "pass": "通行", "deny": "拒绝", "retry": "复测", "manual": "人工",
        "none": "其他", "live_alerts": "实时告警", "no_alerts": "暂无告警。", "print_cards": "打印全部卡片", "trust_list": "信任列表",
        "published_documents": "已下发的控制文件", "doc_type": "文件", "doc_target": "卡口",
        "published_at": "下发时间", "published_by": "操作人", "updated_at": "更新时间", "source": "来源",
        "no_documents": "本服务器尚未下发任何文件。",
        "no_status_entries": "没有黄码或红码人员：未列出者均为绿码。可导入 CSV 添加。",
        "no_passes": "尚未在此签发通行证：可在上方签发或导入 CSV。",
        "online": "在线", "offline": "离线", "stale": "无响应", "unknown": "未知",
        "last_seen": "最后联系", "health": "设备状态", "queue": "待传", "missing": "缺失序号",
        "lists": "名单版本", "filter": "筛选", "export_csv": "导出 CSV", "next_page": "更早 →",
        "since": "从", "until": "至", "any": "全部", "by_reason": "拒绝与复测原因",
        "per_hour": "每小时（全部卡口）", "dead_letters": "被拒消息",
        "issue_pass": "签发通行证", "name": "姓名", "id_number": "身份证号", "kind": "类别",
        "zones": "区域", "expires": "有效期至", "issue": "签发", "revoke": "吊销", "revoked": "已吊销",
        "import_csv": "导入 CSV", "card": "卡片", "publish": "签名并下发", "version": "版本",
        "colour": "码色", "print": "打印", "date": "日期", "fever": "发热", "report_title": "卡口防控日报",
        "people": "测温人次", "passed": "通行", "denied": "劝返", "rechecks": "复测",
        "manual_checks": "人工核验", "signature": "负责人签字", "gaps": "缺口", "household": "户号",
        "phone": "电话", "upload": "上传", "audit": "审计日志", "role": "角色",
        "bad_login": "用户名或密码错误。",
        "status_help": "CSV 列：subject,status（green、yellow 或 red）。",
        "passes_help": "CSV 列：subject,name,id_number,kind,zones,expires（YYYY-MM-DD）。",
        "steward_note": "值守视图：不显示个人信息。",
        "red": "红码", "yellow": "黄码",
    },
}


def pick_language(query: str | None, cookie: str | None, accept: str | None) -> str:
    for candidate in (query, cookie):
        if candidate in LANGUAGES:
            return candidate
    if accept and accept.lower().startswith("zh"):
        return "zh-CN"
    return "en" if accept else "zh-CN"


def translator(lang: str):
    table = TEXTS.get(lang, TEXTS["en"])
    fallback = TEXTS["en"]
    return lambda key: table.get(key) or fallback.get(key) or key
