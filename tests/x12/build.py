"""Writes X12 interchanges for the tests: segments in the usual separators (``*``, ``:``, ``~``, ``^``),
turned into the ones a test asks for, with the counts and control numbers of the envelopes worked out
(or set wrong on purpose)."""

from __future__ import annotations

from dataclasses import dataclass, field

RECEIVER = "SYNTHCLINIC"


@dataclass
class ST:
    control: str
    segments: list[str]
    se_count: int | None = None  # None: the right count
    se_control: str | None = None
    no_se: bool = False
    set_id: str = "835"
    version: str = ""  # ST-03: not used in the 835, required in the 837

    def text(self) -> list[str]:
        head = f"ST*{self.set_id}*{self.control}" + (f"*{self.version}" if self.version else "")
        if self.no_se:
            return [head, *self.segments]
        count = len(self.segments) + 2 if self.se_count is None else self.se_count
        return [head, *self.segments, f"SE*{count}*{self.se_control or self.control}"]


@dataclass
class GS:
    control: str
    transactions: list[ST]
    code: str = "HP"
    version: str = "005010X221A1"
    sender: str = "SYNTHPAYER"
    ge_count: int | None = None
    ge_control: str | None = None
    no_ge: bool = False
    date: str = "20250305"
    time: str = "0930"

    def text(self) -> list[str]:
        out = [f"GS*{self.code}*{self.sender}*{RECEIVER}*{self.date}*{self.time}*{self.control}*X*{self.version}"]
        for st in self.transactions:
            out += st.text()
        if not self.no_ge:
            count = len(self.transactions) if self.ge_count is None else self.ge_count
            out.append(f"GE*{count}*{self.ge_control or self.control}")
        return out


@dataclass
class ISA:
    groups: list[GS]
    control: str = "000000101"
    sender: str = "SYNTHPAYER"
    iea_count: int | None = None
    iea_control: str | None = None
    no_iea: bool = False
    element: str = "*"
    component: str = ":"
    segment: str = "~"
    repetition: str = "^"
    newline: str = "\n"
    extra: list[str] = field(default_factory=list)

    def text(self) -> str:
        isa = (f"ISA*00*          *00*          *ZZ*{self.sender:<15}*ZZ*{RECEIVER:<15}*250305*0930*^*00501*"
               f"{self.control}*0*P*:")
        out = [isa]
        for gs in self.groups:
            out += gs.text()
        out += self.extra
        if not self.no_iea:
            count = len(self.groups) if self.iea_count is None else self.iea_count
            out.append(f"IEA*{count}*{self.iea_control or self.control}")
        table = str.maketrans({"*": self.element, ":": self.component, "^": self.repetition})
        return "".join(s.translate(table) + self.segment + self.newline for s in out)

    def bytes(self) -> bytes:
        return self.text().encode("latin-1")


def payment(payer: str = "SYNTHETIC HEALTH PLAN", payer_id: str = "SHP01", trace: str = "CHK1001",
            total: str = "0", date: str = "20250304", payee_npi: str = "1999999984") -> list[str]:
    """The header of an 835 up to the first LX: BPR, TRN, the payer (N1*PR, REF*2U) and payee (N1*PE)."""
    return [f"BPR*I*{total}*C*ACH*CCP*01*999999992*DA*123456*1512345678**01*999988880*DA*98765*{date}",
            f"TRN*1*{trace}*1512345678", "DTM*405*20250303", f"N1*PR*{payer}", "N3*PO BOX 1", "N4*SPRINGFIELD*IL*62701",
            f"REF*2U*{payer_id}", "PER*BL*CLAIMS*TE*5555550100", f"N1*PE*SYNTHETIC CLINIC*XX*{payee_npi}",
            "REF*TJ*999999999", "LX*1"]


def remit(*segments: str, control: str = "0001", **header: str) -> ISA:
    """One interchange with one 835 of the given claim segments after the standard header."""
    return ISA([GS("1", [ST(control, [*payment(**header), *segments])])])
