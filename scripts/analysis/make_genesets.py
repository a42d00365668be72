"""Build the repository's genesets/ folder from ../shared/genesets and the paper's lists.

Run from the repository root:  python scripts/analysis/make_genesets.py
Writes genesets/paper_immune.gmt, genesets/hallmark_immune.gmt, genesets/reactome_wp_pid_immune.gmt,
genesets/go_bp_immune.gmt and genesets/human_t_cell_markers.gmt. KEGG_* and BIOCARTA_* sets are never
copied (their licence forbids redistribution).
"""
import os
import re

SHARED = os.environ.get("SCSAE_SHARED", "../shared/genesets")
if not os.path.isdir(SHARED):
    SHARED = "/work/shared/genesets"
OUT = "genesets"

# The paper's immune marker and functional sets (Biodyn-AI/neuro-sae experiment scripts, as listed in
# shared/reference/sae.md).
PAPER = """B_cell: CD79A CD79B MS4A1 CD19 PAX5 BANK1 CD22 BLK BLNK IGHM IGHD TCL1A FCER2
T_cell: CD3D CD3E CD3G CD2 CD7 LCK ZAP70 ITK TRAC TRBC1 TRBC2 LEF1 TCF7
CD4_T: CD4 IL7R CCR7 FOXP3 IL2RA CTLA4
CD8_T: CD8A CD8B GZMB GZMK PRF1 NKG7 IFNG
macrophage: CD68 CD14 CD163 MRC1 MARCO MSR1 CSF1R ITGAM FCGR1A ADGRE1
monocyte: CD14 FCGR3A S100A9 S100A8 LYZ VCAN
neutrophil: S100A8 S100A9 S100A12 FCGR3B CSF3R CXCR2 MMP9 ELANE MPO
NK_cell: NKG7 GNLY KLRD1 KLRB1 NCAM1 KLRC1 NCR1 FCGR3A PRF1
plasma_cell: SDC1 IGHG1 IGHG2 MZB1 JCHAIN XBP1 PRDM1 IRF4
erythrocyte: HBB HBA1 HBA2 ALAS2 SLC4A1 GYPA
cytokine_signaling: IL1B IL6 TNF IFNG IL10 IL2 IL4 IL17A TGFB1 CSF2
antigen_presentation: HLA-A HLA-B HLA-C HLA-DRA HLA-DRB1 HLA-DQA1 HLA-DQB1 HLA-DPA1 HLA-DPB1 B2M TAP1 TAP2 CIITA
TCR_signaling: CD3D CD3E ZAP70 LCK LAT SLP76 PLCG1 ITK FYN NFATC1
BCR_signaling: CD79A CD79B SYK BTK BLNK PLCG2 PIK3CD VAV1 LYN
innate_immunity: TLR2 TLR4 TLR7 TLR8 MYD88 IRAK1 NFKB1 NLRP3 CASP1 IL1B"""

HALLMARK_IMMUNE = {
    "HALLMARK_TNFA_SIGNALING_VIA_NFKB", "HALLMARK_IL6_JAK_STAT3_SIGNALING", "HALLMARK_IL2_STAT5_SIGNALING",
    "HALLMARK_INTERFERON_ALPHA_RESPONSE", "HALLMARK_INTERFERON_GAMMA_RESPONSE",
    "HALLMARK_INFLAMMATORY_RESPONSE", "HALLMARK_COMPLEMENT", "HALLMARK_ALLOGRAFT_REJECTION",
    "HALLMARK_HEME_METABOLISM", "HALLMARK_APOPTOSIS",
}
C2_IMMUNE = re.compile(
    "IMMUN|INTERLEUKIN|INTERFERON|TCR|BCR|T_CELL|B_CELL|ANTIGEN|MHC|CYTOKINE|TOLL|TLR|NFKB|CHEMOKINE|"
    "COMPLEMENT|NATURAL_KILLER|NK_CELL|INFLAMM|FCGR|FCERI|FC_EPSILON|FC_GAMMA|LYMPHOCYTE|NEUTROPHIL|"
    "MACROPHAGE|JAK_STAT|CD28|CTLA4|PD_1|PD1|IL2_|IL6|IL12|IL23|IL27|TNF|HEMOSTASIS|ERYTHRO|HEMOGLOBIN|PLATELET"
)
GO_EXCLUDE = {"GO:0007049_cell_cycle", "GO:0006412_translation"}


def read(name):
    with open(os.path.join(SHARED, name)) as f:
        return [l.rstrip("\n").split("\t") for l in f if l.strip()]


def write(name, rows):
    with open(os.path.join(OUT, name), "w") as f:
        for r in rows:
            f.write("\t".join(r) + "\n")
    print(f"{name}: {len(rows)} sets")


os.makedirs(OUT, exist_ok=True)
paper = []
for line in PAPER.splitlines():
    n, genes = line.split(":")
    paper.append([n, "SAE-scGPT paper section 3.4 (neuro-sae experiment scripts)"] + genes.split())
write("paper_immune.gmt", paper)
write("hallmark_immune.gmt", [r for r in read("h.all.v7.5.1.symbols.gmt") if r[0] in HALLMARK_IMMUNE])
c2 = [
    r for r in read("c2.cp.v7.5.1.symbols.gmt")
    if re.match("^(REACTOME|WP|PID)_", r[0]) and not re.match("^(KEGG|BIOCARTA)_", r[0]) and C2_IMMUNE.search(r[0])
]
write("reactome_wp_pid_immune.gmt", c2)
write("go_bp_immune.gmt", [r for r in read("go_bp_immune_subset.gmt") if r[0] not in GO_EXCLUDE])
write("human_t_cell_markers.gmt", read("human_t_cell_markers.gmt"))
