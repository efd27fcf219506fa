; sidep-helper — NSIS installer (per-machine, 64-bit), built by packaging/windows/build:
;   makensis -DVERSION=x.y.z -DSTAGE=<staged files> -DOUTFILE=<setup.exe> installer.nsi
; Silent: setup.exe /S [/PORT=n] [/WATCH="D:\dossier"] [/PRINTER="nom"] [/TRUSTED_FORWARDERS="a@b,c@d"]
;         [/RETENTION_DAYS=n] [/D=C:\autre\dossier (last, unquoted)]
; Uninstall: "<INSTDIR>\uninstall.exe" /S [/REMOVEDATA]
; What it does, in order (section "sidep-helper"):
;  1. an earlier installation in the same folder: its helpers are stopped and its Python replaced;
;  2. files under $PROGRAMFILES64\sidep-helper; uninstall.exe;
;  3. the raw parameters under HKLM\Software\sidep-helper\Install (CommandLine), then
;     tools\setup_actions.py configure parses them into the same values as the MSI's, writes
;     %ProgramData%\sidep-helper\config.toml and the native-messaging manifests (a bad value
;     stops here, exit code 2, reason in %ProgramData%\sidep-helper\installation.log);
;  4. HKLM keys of the pairing host (Chrome, Chromium, Edge, Mozilla), the logon entry (HKLM Run key,
;     pythonw.exe -m helper serve), the Start-menu entry for all users, the Programs and Features entry.
Unicode true
Target amd64-unicode
ManifestDPIAware true
!include LogicLib.nsh
!include FileFunc.nsh

!define PRODUCT "sidep-helper"
!define UNINST_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\sidep-helper"
!define RUN_KEY "Software\Microsoft\Windows\CurrentVersion\Run"
!define PARAM_KEY "Software\sidep-helper\Install"
!define SHORTCUT "Certificats SI-DEP — état du service.lnk"
!define HOST "fr.sidep_helper.pairing"
!define ACTIONS '"$INSTDIR\python\pythonw.exe" -B "$INSTDIR\tools\setup_actions.py"'

Name "sidep-helper ${VERSION}"
OutFile "${OUTFILE}"
InstallDir "$PROGRAMFILES64\sidep-helper"
RequestExecutionLevel admin
SetCompressor /SOLID lzma
ShowInstDetails show
ShowUninstDetails show
BrandingText "sidep-helper ${VERSION}"

VIProductVersion "${VERSION}.0"
VIAddVersionKey /LANG=1036 "ProductName" "sidep-helper"
VIAddVersionKey /LANG=1036 "ProductVersion" "${VERSION}"
VIAddVersionKey /LANG=1036 "FileVersion" "${VERSION}"
VIAddVersionKey /LANG=1036 "FileDescription" "Installation de sidep-helper (certificats SI-DEP)"
VIAddVersionKey /LANG=1036 "LegalCopyright" "Licence MIT"

Page directory
Page instfiles
UninstPage uninstConfirm
UninstPage instfiles
LoadLanguageFile "${NSISDIR}\Contrib\Language files\French.nlf"

Var Parameters

Function .onInit
  SetRegView 64
  SetShellVarContext all
  ; parsed by setup_actions.py (quotes around the whole option or around its value both work)
  ${GetParameters} $Parameters
FunctionEnd

Section "sidep-helper"
  SetOutPath "$INSTDIR"
  IfFileExists "$INSTDIR\tools\setup_actions.py" 0 fresh
    DetailPrint "Mise à jour : arrêt du service en cours d'exécution"
    nsExec::ExecToLog '${ACTIONS} remove'
    Pop $0
    RMDir /r "$INSTDIR\python"
    RMDir /r "$INSTDIR\tools"
  fresh:
  File /r "${STAGE}\*"
  WriteUninstaller "$INSTDIR\uninstall.exe"

  WriteRegStr HKLM "${PARAM_KEY}" "CommandLine" $Parameters
  WriteRegStr HKLM "${PARAM_KEY}" "InstallDir" "$INSTDIR"
  WriteRegStr HKLM "${PARAM_KEY}" "Version" "${VERSION}"
  DetailPrint "Configuration du poste (%ProgramData%\sidep-helper\config.toml)"
  nsExec::ExecToLog '${ACTIONS} configure'
  Pop $0
  ${If} $0 != 0
    MessageBox MB_ICONSTOP "Paramètre d'installation refusé (code $0) : voir $COMMONPROGRAMDATA\sidep-helper\installation.log" /SD IDOK
    SetErrorLevel 2
    Abort
  ${EndIf}

  WriteRegStr HKLM "Software\Google\Chrome\NativeMessagingHosts\${HOST}" "" "$INSTDIR\native-messaging\${HOST}.chromium.json"
  WriteRegStr HKLM "Software\Chromium\NativeMessagingHosts\${HOST}" "" "$INSTDIR\native-messaging\${HOST}.chromium.json"
  WriteRegStr HKLM "SOFTWARE\Microsoft\Edge\NativeMessagingHosts\${HOST}" "" "$INSTDIR\native-messaging\${HOST}.chromium.json"
  WriteRegStr HKLM "SOFTWARE\Mozilla\NativeMessagingHosts\${HOST}" "" "$INSTDIR\native-messaging\${HOST}.mozilla.json"

  WriteRegStr HKLM "${RUN_KEY}" "sidep-helper" '"$INSTDIR\python\pythonw.exe" -m helper serve'
  CreateShortcut "$SMPROGRAMS\${SHORTCUT}" "$INSTDIR\python\pythonw.exe" '"$INSTDIR\tools\etat.pyw"' \
    "$INSTDIR\python\pythonw.exe" 0 SW_SHOWNORMAL "" "État du service sidep-helper, de l'appairage et de la dernière indexation"

  WriteRegStr HKLM "${UNINST_KEY}" "DisplayName" "sidep-helper"
  WriteRegStr HKLM "${UNINST_KEY}" "DisplayVersion" "${VERSION}"
  WriteRegStr HKLM "${UNINST_KEY}" "Publisher" "sidep-helper"
  WriteRegStr HKLM "${UNINST_KEY}" "InstallLocation" "$INSTDIR"
  WriteRegStr HKLM "${UNINST_KEY}" "DisplayIcon" "$INSTDIR\python\pythonw.exe"
  WriteRegStr HKLM "${UNINST_KEY}" "UninstallString" '"$INSTDIR\uninstall.exe"'
  WriteRegStr HKLM "${UNINST_KEY}" "QuietUninstallString" '"$INSTDIR\uninstall.exe" /S'
  WriteRegDWORD HKLM "${UNINST_KEY}" "NoModify" 1
  WriteRegDWORD HKLM "${UNINST_KEY}" "NoRepair" 1
  ${GetSize} "$INSTDIR" "/S=0K" $0 $1 $2
  WriteRegDWORD HKLM "${UNINST_KEY}" "EstimatedSize" $0
SectionEnd

Function un.onInit
  SetRegView 64
  SetShellVarContext all
FunctionEnd

Section "Uninstall"
  ${GetParameters} $R0
  ClearErrors
  ${GetOptions} $R0 "/REMOVEDATA" $R1
  ${IfNot} ${Errors}
    DetailPrint "Suppression des données de tous les utilisateurs"
    nsExec::ExecToLog '${ACTIONS} remove --remove-data'
  ${Else}
    nsExec::ExecToLog '${ACTIONS} remove'
  ${EndIf}
  Pop $0
  DeleteRegValue HKLM "${RUN_KEY}" "sidep-helper"
  DeleteRegKey HKLM "Software\Google\Chrome\NativeMessagingHosts\${HOST}"
  DeleteRegKey HKLM "Software\Chromium\NativeMessagingHosts\${HOST}"
  DeleteRegKey HKLM "SOFTWARE\Microsoft\Edge\NativeMessagingHosts\${HOST}"
  DeleteRegKey HKLM "SOFTWARE\Mozilla\NativeMessagingHosts\${HOST}"
  DeleteRegKey HKLM "Software\sidep-helper"
  DeleteRegKey HKLM "${UNINST_KEY}"
  Delete "$SMPROGRAMS\${SHORTCUT}"
  RMDir /r "$INSTDIR"
SectionEnd
