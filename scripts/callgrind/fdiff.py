import subprocess, sys, re, collections
def fn(f, incl):
    out = subprocess.run(["callgrind_annotate","--threshold=100","--inclusive="+("yes" if incl else "no"),f],capture_output=True,text=True).stdout
    d=collections.Counter()
    for l in out.splitlines():
        m=re.match(r"\s*([\d,]+) \([^)]*\)\s+(.*?)(?: \[[^\]]*\])?$",l)
        if m and "PROGRAM TOTALS" not in l and "file:function" not in l:
            name=m.group(2).replace("???:","")
            name=re.sub(r"::h[0-9a-f]{16}$","",name)
            d[name]+=int(m.group(1).replace(",",""))
    return d
incl = sys.argv[1]=="incl"; kind=sys.argv[2]; n=int(sys.argv[3])
per={}
for v in (sys.argv[5], sys.argv[6]) if len(sys.argv)>6 else ("before","after"):
    acc=collections.Counter()
    for r in (1,2,3):
        s=fn(f"{v}.{kind}.{r}.cg",incl); b=fn(f"{v}.base.{r}.cg",incl)
        for k in set(s)|set(b): acc[k]+=(s[k]-b[k])/n/3
    per[v]=acc
keys=set().union(*per.values())
rows=sorted(keys,key=lambda k:-abs(per[list(per)[1]][k]-per[list(per)[0]][k]))
for k in rows[:int(sys.argv[4])]:
    b,a=per[list(per)[0]][k],per[list(per)[1]][k]
    print(f"{b:10.0f} {a:10.0f} {a-b:+9.0f}  {k[:150]}")
