#!/usr/bin/env python3
"""Regenerates the binary/encoded fixtures in this directory (see README.md).

Run from this directory: python3 make_fixtures.py. Output is deterministic (gzip mtime 0).
"""
import gzip

# --- App Store Connect Summary Sales report (28 columns, FORMATS.md §5.4) ---------------------
HEADER = ["Provider", "Provider Country", "SKU", "Developer", "Title", "Version",
          "Product Type Identifier", "Units", "Developer Proceeds", "Begin Date", "End Date",
          "Customer Currency", "Country Code", "Currency of Proceeds", "Apple Identifier",
          "Customer Price", "Promo Code", "Parent Identifier", "Subscription", "Period",
          "Category", "CMB", "Device", "Supported Platforms", "Proceeds Reason",
          "Preserved Pricing", "Client", "Order Type"]

def sale(sku, title, ptype, units, country, apple_id, device, platform,
         parent="", currency="USD", proceeds="0", price="0", version="3.2.1"):
    return ["APPLE", "US", sku, "Example Media GmbH", title, version, ptype, units, proceeds,
            "11/27/2026", "11/27/2026", currency, country, currency, apple_id, price, "",
            parent, "", "", "Music", "", device, platform, "", "", "", ""]

R, J = "radio.example.ios", "jazz.fm.app"
ROWS = [
    sale(R, "Example Radio", "1",   "5",    "US", "1234567890", "iPhone",  "iOS"),
    sale(R, "Example Radio", "1F",  "4",    "US", "1234567890", "iPad",    "iOS"),
    sale(R, "Example Radio", "F1",  "3",    "GB", "1234567890", "Desktop", "macOS", currency="GBP"),
    sale(R, "Example Radio", "1",   "-1",   "US", "1234567890", "iPhone",  "iOS"),
    sale(R, "Example Radio", "1T",  "2.00", "DE", "1234567890", "iPad",    "iOS", currency="EUR"),
    sale(R, "Example Radio", "3",   "2",    "US", "1234567890", "iPhone",  "iOS"),
    sale(R, "Example Radio", "3F",  "1",    "DE", "1234567890", "iPhone",  "iOS", currency="EUR"),
    sale(R, "Example Radio", "7",   "7",    "US", "1234567890", "iPhone",  "iOS"),
    sale(R, "Example Radio", "7F",  "6",    "GB", "1234567890", "iPad",    "iOS", currency="GBP"),
    sale(R, "Example Radio", "F7",  "2",    "GB", "1234567890", "Desktop", "macOS", currency="GBP"),
    sale("radio.example.premium", "Premium Month", "IAY", "10", "US", "1234567999", "iPhone",
         "iOS", parent=R, proceeds="3.49", price="4.99"),
    sale(J, "Jazz FM", "1", "9", "FR", "2345678901", "iPhone", "iOS", currency="EUR"),
    sale(J, "Jazz FM", "7", "4", "FR", "2345678901", "iPhone", "iOS", currency="EUR"),
]
tsv = "\n".join("\t".join(r) for r in [HEADER] + ROWS) + "\n"
with open("appstore-sales-2026-11-27.tsv.gz", "wb") as f:
    f.write(gzip.compress(tsv.encode("utf-8"), mtime=0))

# --- Google Play installs, country dimension (FORMATS.md §6.2): UTF-16LE + BOM, CRLF ----------
COUNTRY = """Date,Package Name,Country,Daily Device Installs,Daily Device Uninstalls,Daily Device Upgrades,Total User Installs,Daily User Installs,Daily User Uninstalls,Active Device Installs,Install events,Update events,Uninstall events
2026-11-01,com.example.radio,DE,4,1,10,120,3,1,95,5,12,1
2026-11-01,com.example.radio,GB,2,0,5,60,2,0,40,2,6,0
2026-11-01,com.example.radio,US,7,2,20,300,6,2,250,8,25,2
2026-11-02,com.example.radio,DE,3,0,9,123,3,0,97,4,10,0
2026-11-02,com.example.radio,GB,1,1,4,60,,1,39,1,5,1
2026-11-02,com.example.radio,US,5,1,18,305,5,1,254,6,20,1
"""
# Overview: no dimension column, header in the other case seen in the wild ("Package name").
OVERVIEW = """Date,Package name,Daily Device Installs,Daily Device Uninstalls,Daily Device Upgrades,Total User Installs,Daily User Installs,Daily User Uninstalls,Active Device Installs,Install events,Update events,Uninstall events
2026-11-01,com.example.radio,13,3,35,480,11,3,385,15,43,3
2026-11-02,com.example.radio,9,2,31,488,8,2,390,11,35,2
"""
for name, text in [("installs_com.example.radio_202611_country.csv", COUNTRY),
                   ("installs_com.example.radio_202611_overview.csv", OVERVIEW)]:
    with open(name, "wb") as f:
        f.write(b"\xff\xfe" + text.replace("\n", "\r\n").encode("utf-16-le"))
