; Inno Setup script of the Windows installer: the frozen app (packaging/avatar-desktop.spec, built on Windows) into
; Program Files, a Start menu entry, an optional desktop icon, and an uninstaller.
;
;     iscc /DAppVersion=0.1.0 packaging\windows\avatar-desktop.iss
;
; Writes build\windows\avatar-desktop-VERSION-windows-setup.exe. Not tried by the project's own machines (Linux
; only): .github/workflows/release.yml runs it on a Windows runner.

#ifndef AppVersion
  #error Pass the version: iscc /DAppVersion=X.Y.Z packaging\windows\avatar-desktop.iss
#endif
#define Frozen "..\..\build\pyinstaller\dist\avatar-desktop"

[Setup]
AppId={{6E4B2F0A-3C1D-4F7E-9A85-2D0C7B1E5A93}
AppName=Avatar Desktop
AppVersion={#AppVersion}
AppVerName=Avatar Desktop {#AppVersion}
DefaultDirName={autopf}\Avatar Desktop
DefaultGroupName=Avatar Desktop
DisableProgramGroupPage=yes
UninstallDisplayIcon={app}\avatar-desktop.exe
OutputDir=..\..\build\windows
OutputBaseFilename=avatar-desktop-{#AppVersion}-windows-setup
SetupIconFile=..\..\build\windows\avatar-desktop.ico
Compression=lzma2/max
SolidCompression=yes
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
PrivilegesRequiredOverridesAllowed=dialog
WizardStyle=modern

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
Source: "{#Frozen}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\Avatar Desktop"; Filename: "{app}\avatar-desktop.exe"; Comment: "A talking avatar of your portrait on a virtual camera"
Name: "{group}\Uninstall Avatar Desktop"; Filename: "{uninstallexe}"
Name: "{autodesktop}\Avatar Desktop"; Filename: "{app}\avatar-desktop.exe"; Tasks: desktopicon

[Run]
Filename: "{app}\avatar-desktop.exe"; Description: "{cm:LaunchProgram,Avatar Desktop}"; Flags: nowait postinstall skipifsilent

[Code]
{ OBS Studio's virtual camera registers this DirectShow filter (pyvirtualcam's Windows backend sends to it). }
const
  ObsVirtualCameraClsid = 'CLSID\{A3FCE0F5-3493-419F-958A-ABA1250EC20B}';

function ObsVirtualCameraInstalled: Boolean;
begin
  Result := RegKeyExists(HKEY_CLASSES_ROOT, ObsVirtualCameraClsid) or
            RegKeyExists(HKEY_LOCAL_MACHINE, 'SOFTWARE\Classes\' + ObsVirtualCameraClsid);
end;

procedure CurStepChanged(CurStep: TSetupStep);
begin
  if (CurStep = ssPostInstall) and not ObsVirtualCameraInstalled then
    MsgBox('Avatar Desktop sends your avatar to a virtual camera, and none was found: the OBS Virtual Camera is ' +
           'needed.' + #13#10#13#10 + 'Install OBS Studio (obsproject.com), start it once and click "Start Virtual ' +
           'Camera", then stop it. Zoom, Teams and Meet then list "OBS Virtual Camera"; pick it there.' + #13#10#13#10 +
           'Until then the app works with its preview only.', mbInformation, MB_OK);
end;
